// SPDX-License-Identifier: Apache-2.0
// The whole library but mpi.hpp (which needs MPI):  #include <mprocess/mprocess.hpp>   namespace mp = mprocess;
#pragma once

#include "mprocess/connection.hpp"
#include "mprocess/context.hpp"
#include "mprocess/error.hpp"
#include "mprocess/executor.hpp"
#include "mprocess/functional.hpp"
#include "mprocess/listener.hpp"
#include "mprocess/manager.hpp"
#include "mprocess/pool.hpp"
#include "mprocess/process.hpp"
#include "mprocess/progress.hpp"
#include "mprocess/queue.hpp"
#include "mprocess/serialize.hpp"
#include "mprocess/shared_memory.hpp"
#include "mprocess/shared_value.hpp"
#include "mprocess/subprocess.hpp"
#include "mprocess/synchronize.hpp"
#include "mprocess/timeout.hpp"
#include "mprocess/version.hpp"
