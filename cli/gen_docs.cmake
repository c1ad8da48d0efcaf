# cmake -DDROVER=<drover, with an emulator before it when cross-compiling>
#       -DOUT=<dir> [-DSANITIZED=ON] -P gen_docs.cmake
# Runs the drover just built to make what is generated from its command
# table: the man pages (OUT/man/drover.1, drover-COMMAND.1) and the bash and
# zsh completion scripts (OUT/drover.bash, OUT/_drover).
if(SANITIZED)
  # The instrumented executable: its leak report at exit is not ours to
  # judge here, and would fail the build.
  set(ENV{ASAN_OPTIONS} "detect_leaks=0")
endif()
file(REMOVE_RECURSE "${OUT}/man")
file(MAKE_DIRECTORY "${OUT}")
execute_process(COMMAND ${DROVER} man --dir "${OUT}/man" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "drover man --dir ${OUT}/man: ${rc}")
endif()
foreach(shell bash zsh)
  if(shell STREQUAL "bash")
    set(file "${OUT}/drover.bash")
  else()
    set(file "${OUT}/_drover")
  endif()
  execute_process(COMMAND ${DROVER} completion ${shell}
    OUTPUT_FILE "${file}.tmp" RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "drover completion ${shell}: ${rc}")
  endif()
  file(RENAME "${file}.tmp" "${file}")
endforeach()
