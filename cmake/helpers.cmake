function(mprocess_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic)
endfunction()

# Applies MPROCESS_SANITIZE to everything defined after the call.
macro(mprocess_sanitize)
  if(MPROCESS_SANITIZE)
    list(JOIN MPROCESS_SANITIZE "," _mp_san)
    add_compile_options(-fsanitize=${_mp_san} -fno-omit-frame-pointer -fno-sanitize-recover=all)
    add_link_options(-fsanitize=${_mp_san})
    if("thread" IN_LIST MPROCESS_SANITIZE)
      # TSan does not model fences (the sleeper handshakes use them); it warns for each one.
      add_compile_options(-Wno-tsan)
    endif()
  endif()
endmacro()
