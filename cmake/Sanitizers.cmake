# DROVER_SANITIZER=address,undefined builds everything with those sanitizers.
if(DROVER_SANITIZER)
  set(_san "-fsanitize=${DROVER_SANITIZER}" -fno-omit-frame-pointer
           -fno-sanitize-recover=all)
  add_compile_options(${_san})
  add_link_options(${_san})
  add_compile_definitions(DROVER_SANITIZED=1)
endif()
