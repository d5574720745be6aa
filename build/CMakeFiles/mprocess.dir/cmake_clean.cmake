file(REMOVE_RECURSE
  "CMakeFiles/mprocess.dir/src/connection.cpp.o"
  "CMakeFiles/mprocess.dir/src/connection.cpp.o.d"
  "CMakeFiles/mprocess.dir/src/platform/posix.cpp.o"
  "CMakeFiles/mprocess.dir/src/platform/posix.cpp.o.d"
  "CMakeFiles/mprocess.dir/src/process.cpp.o"
  "CMakeFiles/mprocess.dir/src/process.cpp.o.d"
  "CMakeFiles/mprocess.dir/src/shm_channel.cpp.o"
  "CMakeFiles/mprocess.dir/src/shm_channel.cpp.o.d"
  "libmprocess.a"
  "libmprocess.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang CXX)
  include(CMakeFiles/mprocess.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
