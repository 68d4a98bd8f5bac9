# Finds PyTorch and decides whether the CUDA kernels are built.
#
# The decision depends on the CUDA toolkit and on PyTorch having been built
# with CUDA, never on whether a GPU is present, so a build host without a GPU
# still compiles (and CI still checks) the kernels.
#
# Sets MIRRORFLOW_WITH_CUDA, and CMAKE_CUDA_ARCHITECTURES when it is ON.

if(NOT Torch_DIR)
  # Ask the Python interpreter in use for the PyTorch that pip installed.
  find_package(Python3 QUIET COMPONENTS Interpreter)
  if(Python3_Interpreter_FOUND)
    execute_process(
      COMMAND ${Python3_EXECUTABLE} -c "import torch.utils; print(torch.utils.cmake_prefix_path)"
      OUTPUT_VARIABLE _mf_torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE
      RESULT_VARIABLE _mf_torch_result ERROR_QUIET)
    if(_mf_torch_result EQUAL 0 AND _mf_torch_prefix)
      list(APPEND CMAKE_PREFIX_PATH "${_mf_torch_prefix}")
    endif()
  endif()
endif()

set(_mf_want_cuda OFF)
if(NOT MIRRORFLOW_CUDA STREQUAL "OFF")
  # CMake looks for nvcc on the PATH only; the toolkit's usual homes count too.
  if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX})
    find_program(_mf_nvcc nvcc)
    if(NOT _mf_nvcc)
      find_program(_mf_nvcc nvcc NO_DEFAULT_PATH
                   PATHS "$ENV{CUDA_HOME}/bin" "$ENV{CUDA_PATH}/bin" /usr/local/cuda/bin)
      if(_mf_nvcc)
        set(CMAKE_CUDA_COMPILER "${_mf_nvcc}" CACHE FILEPATH "CUDA compiler")
      endif()
    endif()
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(_mf_want_cuda ON)
  elseif(MIRRORFLOW_CUDA STREQUAL "ON")
    message(FATAL_ERROR "MIRRORFLOW_CUDA=ON but no CUDA compiler was found: put nvcc on the "
                        "PATH or set CMAKE_CUDA_COMPILER (or use MIRRORFLOW_CUDA=AUTO/OFF).")
  endif()
endif()

if(_mf_want_cuda)
  if(NOT CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES ${MIRRORFLOW_CUDA_ARCHITECTURES})
  endif()
  set(_mf_cuda_architectures "${CMAKE_CUDA_ARCHITECTURES}")
  # PyTorch's CMake would otherwise try to detect a GPU to pick architectures.
  if(NOT DEFINED TORCH_CUDA_ARCH_LIST AND NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
    set(TORCH_CUDA_ARCH_LIST "8.0;9.0")
  endif()
  enable_language(CUDA)
  # PyTorch's CMake warns that it ignores CMAKE_CUDA_ARCHITECTURES (it uses
  # TORCH_CUDA_ARCH_LIST); the value is set back once Torch is found.
  unset(CMAKE_CUDA_ARCHITECTURES)
elseif(NOT TARGET torch::cudart)
  # A CUDA build of PyTorch looks for the CUDA toolkit inside find_package(Torch)
  # and stops when there is none. No CUDA code is built here, so an empty
  # runtime target lets the CPU library link against it.
  add_library(torch::cudart INTERFACE IMPORTED)
endif()

find_package(Torch REQUIRED)

set(MIRRORFLOW_WITH_CUDA OFF)
if(_mf_want_cuda AND TARGET torch_cuda)
  set(MIRRORFLOW_WITH_CUDA ON)
  # PyTorch's CMake replaces CMAKE_CUDA_ARCHITECTURES by -gencode flags of its
  # own (from TORCH_CUDA_ARCH_LIST) in CMAKE_CUDA_FLAGS. The kernels are built
  # for MIRRORFLOW_CUDA_ARCHITECTURES (or CMAKE_CUDA_ARCHITECTURES) instead.
  set(CMAKE_CUDA_ARCHITECTURES "${_mf_cuda_architectures}")
  string(REGEX REPLACE "-gencode[ =]+arch=[^ ]+" "" CMAKE_CUDA_FLAGS "${CMAKE_CUDA_FLAGS}")
elseif(MIRRORFLOW_CUDA STREQUAL "ON")
  message(FATAL_ERROR "MIRRORFLOW_CUDA=ON but PyTorch ${Torch_VERSION} was built without CUDA.")
endif()
