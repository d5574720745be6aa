// SPDX-License-Identifier: Apache-2.0
// The lecture's mprocessQueue3.py: a daemon consumer takes items from a JoinableQueue and marks
// each one done; the producer puts 50 items, joins the queue (every item processed), and then
// terminates the consumer, which would otherwise wait forever.
#include <iostream>

#include <mprocess/mprocess.hpp>

namespace mp = mprocess;

void consumer(mp::JoinableQueue<int> input_q) {
    for (;;) {
        // get an item from the queue
        int item = input_q.get();
        // process the item (endl: the line must be out before the parent terminates us)
        std::cout << mp::current_process().name() << " ::  " << item << std::endl;
        // signal completion
        input_q.task_done();
    }
}

void producer(int n, mp::JoinableQueue<int>& output_q) {
    for (int item = 0; item < n; ++item) {
        // put item on the queue
        output_q.put(item);
    }
}

int main(int argc, char** argv) {
    mp::freeze_support(argc, argv);
    // create the queue
    mp::JoinableQueue<int> qq;

    // launch the consumer process
    mp::Process consumer_p(consumer, qq);
    consumer_p.set_daemon(true);
    consumer_p.start();

    // run the producer function on some data
    producer(50, qq);

    // wait for consumer to finish
    qq.join();

    // finally terminate the daemon process
    consumer_p.terminate();
    consumer_p.join();
}
