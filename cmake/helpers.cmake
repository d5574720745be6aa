# SPDX-License-Identifier: Apache-2.0
# The warnings of every target the project builds (MPROCESS_WARNING_FLAGS also serves commands that
# compile without a target), and -Werror with MPROCESS_WARNINGS_AS_ERRORS.
set(MPROCESS_WARNING_FLAGS -Wall -Wextra -Wpedantic)
if(MPROCESS_WARNINGS_AS_ERRORS)
  list(APPEND MPROCESS_WARNING_FLAGS -Werror)
endif()

# mprocess_warnings(target [LIBRARY]): LIBRARY for the library's own targets, which also keep every
# conversion that can change a value explicit (users' and tests' code need not).
function(mprocess_warnings target)
  cmake_parse_arguments(PARSE_ARGV 1 arg "LIBRARY" "" "")
  target_compile_options(${target} PRIVATE ${MPROCESS_WARNING_FLAGS})
  if(arg_LIBRARY)
    target_compile_options(${target} PRIVATE -Wconversion -Wsign-conversion)
  endif()
endfunction()

# Applies MPROCESS_SANITIZE to everything defined after the call.
macro(mprocess_sanitize)
  if(MPROCESS_SANITIZE)
    list(JOIN MPROCESS_SANITIZE "," _mp_san)
    add_compile_options(-fsanitize=${_mp_san} -fno-omit-frame-pointer -fno-sanitize-recover=all)
    add_link_options(-fsanitize=${_mp_san})
    if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
      # GCC's names for "built with ASan/TSan", which clang 19 does not define (libstdc++ reads
      # either these or __has_feature, so they change nothing there).
      if("address" IN_LIST MPROCESS_SANITIZE)
        add_compile_definitions(__SANITIZE_ADDRESS__=1)
      endif()
      if("thread" IN_LIST MPROCESS_SANITIZE)
        add_compile_definitions(__SANITIZE_THREAD__=1)
      endif()
    endif()
    if("thread" IN_LIST MPROCESS_SANITIZE AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
      # TSan does not model fences (the sleeper handshakes use them); GCC warns for each one.
      add_compile_options(-Wno-tsan)
    endif()
    if(("address" IN_LIST MPROCESS_SANITIZE OR "thread" IN_LIST MPROCESS_SANITIZE)
       AND NOT (CMAKE_CXX_COMPILER_ID STREQUAL "Clang" AND CMAKE_CXX_COMPILER_VERSION VERSION_GREATER_EQUAL 19))
      message(WARNING "MPROCESS_SANITIZE=${MPROCESS_SANITIZE} with ${CMAKE_CXX_COMPILER_ID} "
        "${CMAKE_CXX_COMPILER_VERSION}: this runtime does not hold its allocator's locks across fork(), so a "
        "child forked while another thread allocates can block forever (the fork-method Pool replaces "
        "workers from its manager thread). dev.sh builds the sanitizer runs with clang++-19.")
    endif()
  endif()
endmacro()

# Options every program of a sanitizer build needs, whoever runs it (ctest, a developer, the tickets
# tests' subprocesses): linked into each target defined after the call (not the library itself,
# which is installed and exported).
macro(mprocess_sanitizer_defaults)
  # A fuzz target neither forks nor starts threads: it keeps ASan's quarantine.
  if(("address" IN_LIST MPROCESS_SANITIZE OR "thread" IN_LIST MPROCESS_SANITIZE)
     AND NOT "fuzzer-no-link" IN_LIST MPROCESS_SANITIZE)
    add_library(mprocess_sanitizer_defaults OBJECT ${PROJECT_SOURCE_DIR}/cmake/sanitizer_defaults.cpp)
    link_libraries(mprocess_sanitizer_defaults)
  endif()
endmacro()

# Which tests a sanitizer build runs is a rule, not a list: each build runs every test it defines
# (dev.sh runs plain ctest in each). A test that must not run under some sanitizers says so where
# it is defined, with the reason; in a build with one of them it is disabled (ctest lists it as
# "Disabled") and labelled not_under_<sanitizer>:
#   mprocess_not_under_sanitizers(SANITIZERS address|undefined|thread... REASON "why" TESTS test...)
function(mprocess_not_under_sanitizers)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "REASON" "SANITIZERS;TESTS")
  if(NOT arg_REASON OR NOT arg_SANITIZERS OR NOT arg_TESTS)
    message(FATAL_ERROR "mprocess_not_under_sanitizers needs SANITIZERS, TESTS and a REASON")
  endif()
  set(labels "")
  set(disabled OFF)
  foreach(san IN LISTS arg_SANITIZERS)
    list(APPEND labels not_under_${san})
    if(san IN_LIST MPROCESS_SANITIZE)
      set(disabled ON)
    endif()
  endforeach()
  foreach(test IN LISTS arg_TESTS)
    set_property(TEST ${test} APPEND PROPERTY LABELS ${labels})
    set_property(TEST ${test} PROPERTY DISABLED ${disabled})
  endforeach()
  if(disabled)
    list(JOIN arg_TESTS " " names)
    message(STATUS "Not under ${MPROCESS_SANITIZE}: ${names}: ${arg_REASON}")
  endif()
endfunction()
