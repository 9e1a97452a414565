// Cooperative interruption of long computations.
//
// The core calls poll_interrupt() in every loop whose length comes from the input (Krylov iterations,
// the lines of a Matrix Market file, rows of a preconditioner set-up, ...), always from serial code,
// never inside a parallel loop of a kernel. When a handler is installed, poll_interrupt() calls it at most
// once every ~50 ms per thread; the handler aborts the computation by throwing, and the exception
// propagates to the caller unchanged (every resource of the core is owned by RAII objects). Outputs
// written in place (a Krylov iterate, say) hold whatever was reached when the exception was thrown.
//
// The batched entry points run their members on OpenMP threads, so there the handler is called from
// those threads too (it must be thread-safe) and the calling thread is one of them. What it throws stops
// that member; the batch then stops its other members at their next poll and rethrows it unchanged after
// the parallel region.
//
// The Python module installs a handler that runs pending Python signal handlers, so Ctrl-C raises
// KeyboardInterrupt out of a long solve or read.
#pragma once

namespace sla {

using InterruptHandler = void (*)();

// Install `handler` for every thread (nullptr removes it). Stored atomically; takes effect at the next
// poll of each thread.
void set_interrupt_handler(InterruptHandler handler);

// The installed handler, or nullptr.
InterruptHandler interrupt_handler();

// Call the handler if one is installed and this thread has not called it in the last kInterruptPeriodMs
// (so a computation's first poll calls it unless the thread did just before). Without a handler this
// is one atomic load; with one, a read of a cheap monotonic clock (a few ns on Linux) and a comparison.
void poll_interrupt();

inline constexpr int kInterruptPeriodMs = 50;

}  // namespace sla
