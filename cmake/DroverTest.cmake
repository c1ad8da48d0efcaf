# drover_test(NAME SOURCES... LIBS ... [TIMEOUT s] [LABEL l] [OOM]) - one
# cmocka executable, one ctest. OOM links tests/fixtures/oom_inject.c with
# the allocator wrapped, so the test can make the Nth allocation fail.
# Timeouts are scaled when built with sanitizers.
if(DROVER_SANITIZER)
  set(DROVER_TIMEOUT_SCALE 3)
else()
  set(DROVER_TIMEOUT_SCALE 1)
endif()

function(drover_test name)
  cmake_parse_arguments(T "OOM" "TIMEOUT;LABEL" "SOURCES;LIBS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 60)
  endif()
  if(NOT T_LABEL)
    set(T_LABEL unit)
  endif()
  math(EXPR _timeout "${T_TIMEOUT} * ${DROVER_TIMEOUT_SCALE}")
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_LIBS} PkgConfig::CMOCKA)
  if(T_OOM)
    target_sources(${name} PRIVATE
      ${PROJECT_SOURCE_DIR}/tests/fixtures/oom_inject.c)
    target_include_directories(${name} PRIVATE
      ${PROJECT_SOURCE_DIR}/tests/fixtures)
    target_link_options(${name} PRIVATE -Wl,--wrap=malloc -Wl,--wrap=calloc
      -Wl,--wrap=realloc -Wl,--wrap=strdup)
  endif()
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES TIMEOUT ${_timeout} LABELS ${T_LABEL}
    ENVIRONMENT "DROVER_BIN=$<TARGET_FILE:drover>;DROVER_TIMEOUT_SCALE=${DROVER_TIMEOUT_SCALE}")
endfunction()
