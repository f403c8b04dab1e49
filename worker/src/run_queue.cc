// SPDX-License-Identifier: Apache-2.0
#include "run_queue.h"

namespace pgjobs::worker {

RunQueue::RunQueue(RunPolicy policy, const Shutdown& shutdown)
    : shutdown_(shutdown), concurrency_(policy.Concurrency()), policy_(std::move(policy)) {}

int RunQueue::WaitForSlots() {
  std::unique_lock<std::mutex> lock(mutex_);
  slots_cv_.wait(lock, [this] { return shutdown_.Stopping() || policy_.MayConsume(); });
  return shutdown_.Stopping() ? 0 : policy_.Want();
}

void RunQueue::Push(std::vector<Taken> jobs, double consume_seconds) {
  std::optional<double> shortest_timeout;
  for (const Taken& t : jobs) {
    const double timeout = std::chrono::duration<double>(t.job.deadline - t.started).count();
    if (!shortest_timeout || timeout < *shortest_timeout) shortest_timeout = timeout;
  }
  int wake = 0;
  bool wake_watchdog = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    policy_.Consumed(consume_seconds, shortest_timeout);
    if (jobs.empty()) return;
    double expected = 0;
    for (Taken& t : jobs) {
      t.expected_seconds = policy_.ExpectedSeconds(t.job.task);
      expected += t.expected_seconds;
      queue_.push_back(std::move(t));
    }
    wake = policy_.Queued(static_cast<int>(jobs.size()), expected, queue_.size(), Clock::now());
    // With an executor woken for every queued job, none waits behind another: the watchdog
    // sleeps on, which spares single jobs a thread switch on their way.
    wake_watchdog = watchdog_parked_ && queue_.size() > static_cast<size_t>(wake);
  }
  if (wake >= concurrency_) {
    work_cv_.notify_all();
  } else {
    for (int i = 0; i < wake; ++i) work_cv_.notify_one();
  }
  if (wake_watchdog) watch_cv_.notify_one();
}

std::vector<Taken> RunQueue::Take(const Ran& ran) {
  std::vector<Taken> jobs;
  // Freeing the last jobs' slots and taking the next jobs share one lock: with many executors,
  // this mutex is the worker's most contended.
  std::unique_lock<std::mutex> lock(mutex_);
  if (ran.jobs > 0) {
    policy_.Finished(ran.task, ran.jobs, ran.seconds_per_job);
    if (policy_.MayConsume()) slots_cv_.notify_one();
  }
  policy_.ExecutorWaits();
  work_cv_.wait(lock, [this] { return !queue_.empty() || shutdown_.Stopping(); });
  policy_.ExecutorWakes();
  if (queue_.empty()) return jobs;
  jobs.push_back(std::move(queue_.front()));
  queue_.pop_front();
  // A copy: the vector grows below.
  const std::string task = jobs.front().job.task;
  const auto limit = static_cast<size_t>(policy_.Batch(task));
  for (auto it = queue_.begin(); it != queue_.end() && jobs.size() < limit;) {
    if (it->job.task == task) {
      jobs.push_back(std::move(*it));
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
  double expected = 0;
  for (const Taken& t : jobs) expected += t.expected_seconds;
  policy_.Took(expected, queue_.size(), Clock::now());
  return jobs;
}

int RunQueue::Prefetch() {
  std::lock_guard<std::mutex> lock(mutex_);
  return policy_.Prefetch();
}

void RunQueue::Watch() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!shutdown_.Stopping()) {
    // Queued jobs and a waiting executor together only follow a new batch (an executor waits
    // only on an empty queue), so the watchdog sleeps until the dispatcher's next batch whenever
    // either is missing: a worker whose executors are all busy with long jobs does not tick.
    if (!policy_.Watching(queue_.size())) {
      watchdog_parked_ = true;
      watch_cv_.wait(lock,
                     [this] { return shutdown_.Stopping() || policy_.Watching(queue_.size()); });
      watchdog_parked_ = false;
      continue;
    }
    watch_cv_.wait_until(lock, policy_.NextLook(), [this] { return shutdown_.Stopping(); });
    if (policy_.Stalled(queue_.size(), Clock::now())) work_cv_.notify_one();
  }
}

void RunQueue::WakeAll() {
  // A thread that saw Stopping() false under the lock is waiting by the time the lock is ours.
  { std::lock_guard<std::mutex> lock(mutex_); }
  work_cv_.notify_all();
  slots_cv_.notify_all();
  watch_cv_.notify_all();
}

}  // namespace pgjobs::worker
