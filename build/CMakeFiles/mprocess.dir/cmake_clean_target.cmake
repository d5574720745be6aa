file(REMOVE_RECURSE
  "libmprocess.a"
)
