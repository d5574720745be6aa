# Empty dependencies file for mprocess.
# This may be replaced when dependencies are built.
