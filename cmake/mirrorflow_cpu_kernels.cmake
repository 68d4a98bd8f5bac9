# The CPU kernel, compiled once per CPU capability as ATen compiles its own
# (DEFAULT for any x86-64/ARM CPU, AVX2 and AVX512 on x86-64), into the
# object library mirrorflow_cpu_kernels. csrc/cpu/mirror_step_dispatch.cpp
# picks one at run time from at::native::get_cpu_capability().
#
# Sets MIRRORFLOW_CPU_CAPABILITIES and MIRRORFLOW_CPU_CAPABILITY_DEFINITIONS.

set(MIRRORFLOW_CPU_CAPABILITIES DEFAULT)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  list(APPEND MIRRORFLOW_CPU_CAPABILITIES AVX2 AVX512)
endif()
set(_mf_flags_DEFAULT "")
set(_mf_flags_AVX2 -mavx2 -mfma -mbmi -mbmi2 -mf16c)
set(_mf_flags_AVX512 -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c)

set(MIRRORFLOW_CPU_CAPABILITY_DEFINITIONS "")
set(_mf_objects "")
foreach(cap IN LISTS MIRRORFLOW_CPU_CAPABILITIES)
  set(target mirrorflow_cpu_kernel_${cap})
  add_library(${target} OBJECT ${MIRRORFLOW_CPU_KERNEL_SOURCES})
  target_include_directories(${target} PRIVATE
    ${CMAKE_CURRENT_SOURCE_DIR}/csrc/include ${CMAKE_CURRENT_SOURCE_DIR}/csrc)
  target_link_libraries(${target} PRIVATE torch)
  target_compile_definitions(${target} PRIVATE CPU_CAPABILITY=${cap} CPU_CAPABILITY_${cap})
  target_compile_options(${target} PRIVATE ${_mf_flags_${cap}} ${MIRRORFLOW_STRICT_FP_FLAGS}
    ${MIRRORFLOW_OPENMP_FLAGS})
  list(APPEND _mf_objects $<TARGET_OBJECTS:${target}>)
  list(APPEND MIRRORFLOW_CPU_CAPABILITY_DEFINITIONS MIRRORFLOW_CPU_${cap})
endforeach()
set(MIRRORFLOW_CPU_KERNEL_OBJECTS ${_mf_objects})
