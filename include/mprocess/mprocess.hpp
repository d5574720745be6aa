// SPDX-License-Identifier: Apache-2.0
/// @file
/// The whole library but mpi.hpp (which needs MPI):  `#include <mprocess/mprocess.hpp>`   `namespace mp = mprocess;`
#pragma once

/// @namespace mprocess
/// Python's multiprocessing, with its subprocess module and concurrent.futures' process pool, in
/// C++20. Programs name it as Python's `import multiprocessing as mp` does: `namespace mp = mprocess;`.

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
