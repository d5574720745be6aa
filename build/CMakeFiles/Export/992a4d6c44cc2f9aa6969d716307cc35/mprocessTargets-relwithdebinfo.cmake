#----------------------------------------------------------------
# Generated CMake target import file for configuration "RelWithDebInfo".
#----------------------------------------------------------------

# Commands may need to know the format version.
set(CMAKE_IMPORT_FILE_VERSION 1)

# Import target "mprocess::mprocess" for configuration "RelWithDebInfo"
set_property(TARGET mprocess::mprocess APPEND PROPERTY IMPORTED_CONFIGURATIONS RELWITHDEBINFO)
set_target_properties(mprocess::mprocess PROPERTIES
  IMPORTED_LINK_INTERFACE_LANGUAGES_RELWITHDEBINFO "CXX"
  IMPORTED_LOCATION_RELWITHDEBINFO "${_IMPORT_PREFIX}/lib/libmprocess.a"
  )

list(APPEND _cmake_import_check_targets mprocess::mprocess )
list(APPEND _cmake_import_check_files_for_mprocess::mprocess "${_IMPORT_PREFIX}/lib/libmprocess.a" )

# Commands beyond this point should not need to know the version.
set(CMAKE_IMPORT_FILE_VERSION)
