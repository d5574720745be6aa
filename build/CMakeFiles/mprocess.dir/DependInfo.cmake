
# Consider dependencies only in project.
set(CMAKE_DEPENDS_IN_PROJECT_ONLY OFF)

# The set of languages for which implicit dependencies are needed:
set(CMAKE_DEPENDS_LANGUAGES
  )

# The set of dependency files which are needed:
set(CMAKE_DEPENDS_DEPENDENCY_FILES
  "/work/main/src/connection.cpp" "CMakeFiles/mprocess.dir/src/connection.cpp.o" "gcc" "CMakeFiles/mprocess.dir/src/connection.cpp.o.d"
  "/work/main/src/platform/posix.cpp" "CMakeFiles/mprocess.dir/src/platform/posix.cpp.o" "gcc" "CMakeFiles/mprocess.dir/src/platform/posix.cpp.o.d"
  "/work/main/src/process.cpp" "CMakeFiles/mprocess.dir/src/process.cpp.o" "gcc" "CMakeFiles/mprocess.dir/src/process.cpp.o.d"
  "/work/main/src/shm_channel.cpp" "CMakeFiles/mprocess.dir/src/shm_channel.cpp.o" "gcc" "CMakeFiles/mprocess.dir/src/shm_channel.cpp.o.d"
  )

# Targets to which this target links.
set(CMAKE_TARGET_LINKED_INFO_FILES
  )

# Fortran module output directory.
set(CMAKE_Fortran_TARGET_MODULE_DIR "")
