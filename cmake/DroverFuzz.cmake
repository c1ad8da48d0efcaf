# drover_fuzz(NAME SOURCES... [INCLUDES...] [LIBS...] [FUZZ_SOURCES...]
#             [FUZZ_LIBS...] DIRS...)
#
# A fuzz target (a file defining LLVMFuzzerTestOneInput) built twice:
# - NAME_replay, always: the target with cmake/fuzz_replay.c as main(), run
#   by ctest (labels unit, fuzz) over DIRS (seed corpus, regressions);
# - NAME, with -DDROVER_FUZZ=ON and clang: a libFuzzer binary, for example
#     build/worker/worker_ipc_fuzz -max_total_time=300 \
#         worker/fuzz/corpus-work worker/fuzz/corpus
#   (libFuzzer writes new inputs into the first directory; copy any crash-*
#   file it leaves into the regressions directory).
# LIBS link both. In the libFuzzer build, FUZZ_SOURCES are compiled in too
# (code whose coverage should be instrumented) and FUZZ_LIBS replace LIBS.
option(DROVER_FUZZ "Build libFuzzer targets (clang only)" OFF)
if(DROVER_FUZZ AND NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "DROVER_FUZZ needs clang: -DCMAKE_C_COMPILER=clang")
endif()

function(drover_fuzz name)
  cmake_parse_arguments(F "" "" "SOURCES;INCLUDES;LIBS;FUZZ_SOURCES;FUZZ_LIBS;DIRS" ${ARGN})
  add_executable(${name}_replay ${F_SOURCES}
    ${PROJECT_SOURCE_DIR}/cmake/fuzz_replay.c)
  target_include_directories(${name}_replay PRIVATE ${F_INCLUDES})
  target_link_libraries(${name}_replay PRIVATE ${F_LIBS})
  add_test(NAME ${name}_replay COMMAND ${name}_replay ${F_DIRS})
  math(EXPR _timeout "60 * ${DROVER_TIMEOUT_SCALE}")
  set_tests_properties(${name}_replay PROPERTIES
    TIMEOUT ${_timeout} LABELS "unit;fuzz")
  if(DROVER_FUZZ)
    set(_flags -fsanitize=fuzzer,address,undefined -fno-omit-frame-pointer)
    add_executable(${name} ${F_SOURCES} ${F_FUZZ_SOURCES})
    target_include_directories(${name} PRIVATE ${F_INCLUDES})
    target_compile_options(${name} PRIVATE ${_flags})
    target_link_options(${name} PRIVATE ${_flags})
    if(F_FUZZ_LIBS)
      target_link_libraries(${name} PRIVATE ${F_FUZZ_LIBS})
    else()
      target_link_libraries(${name} PRIVATE ${F_LIBS})
    endif()
  endif()
endfunction()
