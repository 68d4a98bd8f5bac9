# ctest driver: install the built package into a prefix, build tests/consumer
# and the README's C++ example against it with find_package(mirrorflow), run both.
set(prefix "${WORK_DIR}/prefix")
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

function(run_step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc})")
  endif()
endfunction()

# The block after "<!-- example: cpp -->" in README.md.
file(READ "${README}" readme)
set(marker "<!-- example: cpp -->\n```cpp\n")
string(FIND "${readme}" "${marker}" begin)
if(begin EQUAL -1)
  message(FATAL_ERROR "README.md has no C++ example after '<!-- example: cpp -->'")
endif()
string(LENGTH "${marker}" marker_length)
math(EXPR begin "${begin} + ${marker_length}")
string(SUBSTRING "${readme}" ${begin} -1 rest)
string(FIND "${rest}" "\n```" end)
string(SUBSTRING "${rest}" 0 ${end} example)
file(WRITE "${WORK_DIR}/readme_example.cpp" "${example}\n")

run_step("installing mirrorflow"
         ${CMAKE_COMMAND} --install "${MIRRORFLOW_BUILD_DIR}" --prefix "${prefix}")
run_step("configuring the consumer project"
         ${CMAKE_COMMAND} -S "${CONSUMER_SOURCE_DIR}" -B "${WORK_DIR}/build" -G "${GENERATOR}"
         "-DCMAKE_PREFIX_PATH=${prefix}" "-DTorch_DIR=${Torch_DIR}" -DCMAKE_BUILD_TYPE=Release
         "-DREADME_EXAMPLE=${WORK_DIR}/readme_example.cpp")
run_step("building the consumer project" ${CMAKE_COMMAND} --build "${WORK_DIR}/build")
run_step("running the consumer program" "${WORK_DIR}/build/consumer")
run_step("running the README's C++ example" "${WORK_DIR}/build/readme_example")
