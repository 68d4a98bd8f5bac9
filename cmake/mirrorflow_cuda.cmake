# Adds the CUDA kernels to the library `mirrorflow` (included when
# MIRRORFLOW_WITH_CUDA is ON).
target_sources(mirrorflow PRIVATE ${MIRRORFLOW_CUDA_SOURCES})
# The shared CUDA runtime, the one PyTorch uses: with CMake's default (static)
# the library would carry a runtime of its own, with its own current device
# and error state, apart from the one c10's CUDAGuard and streams talk to.
set_target_properties(mirrorflow PROPERTIES
  CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}"
  CUDA_RUNTIME_LIBRARY Shared)
target_compile_definitions(mirrorflow PRIVATE MIRRORFLOW_WITH_CUDA)
# No contraction into FMA beyond the ones the update writes out (the same
# rounding as the CPU kernels); relaxed constexpr lets device code use
# std::numeric_limits.
target_compile_options(mirrorflow PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:--fmad=false --expt-relaxed-constexpr>)
set(MIRRORFLOW_CUDA_ARCHITECTURES_BUILT "${CMAKE_CUDA_ARCHITECTURES}")
