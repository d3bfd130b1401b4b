#include "disco/thread_counters.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <new>
#include <vector>

namespace disco {
namespace {

constexpr std::uint32_t kPageBlocks = 128;  // blocks per page: 4 KiB
constexpr std::uint32_t kTablePages = 256;  // pages per table: 2 KiB of pointers
constexpr std::uint32_t kTables = 128;      // so at most 4 M blocks
constexpr std::uint32_t kMaxBlocks = kPageBlocks * kTablePages * kTables;

struct Block {
  std::atomic<std::uint64_t> value[ThreadCounters::kMax];
};
// Aligned so that no other allocation, written by another thread, shares
// its first or last line.
struct alignas(64) Page {
  Block blocks[kPageBlocks];
};
struct Table {
  std::atomic<Page*> pages[kTablePages];
};

// One thread's copies of every object's counters. Pages and tables are made
// by the slab's writer and published with release stores; readers load them
// with acquire. Nothing in a slab is ever freed: a slab outlives its thread
// and is handed to the next thread that counts.
struct Slab {
  std::atomic<Table*> tables[kTables] = {};
  Slab* next = nullptr;  // the list of every slab; set before the slab is published

  Page* Find(std::uint32_t block) const noexcept {
    Table* table = tables[block / (kPageBlocks * kTablePages)].load(std::memory_order_acquire);
    if (table == nullptr) return nullptr;
    return table->pages[block / kPageBlocks % kTablePages].load(std::memory_order_acquire);
  }

  // Only the slab's writer calls this. Throws std::bad_alloc (Add is
  // noexcept: out of memory for a 4 KiB page ends the process).
  Page& Make(std::uint32_t block) {
    auto& table_slot = tables[block / (kPageBlocks * kTablePages)];
    Table* table = table_slot.load(std::memory_order_relaxed);
    if (table == nullptr) {
      table = new Table();  // value-initialised: no pages
      table_slot.store(table, std::memory_order_release);
    }
    auto& page_slot = table->pages[block / kPageBlocks % kTablePages];
    Page* page = page_slot.load(std::memory_order_relaxed);
    if (page == nullptr) {
      page = new Page();  // value-initialised: every counter zero
      page_slot.store(page, std::memory_order_release);
    }
    return *page;
  }

  static std::atomic<std::uint64_t>& Cell(Page& page, std::uint32_t block, std::size_t counter) {
    return page.blocks[block % kPageBlocks].value[counter];
  }
};

// Never destroyed: objects with counters may outlive static destruction.
struct State {
  std::atomic<Slab*> all{nullptr};  // every slab made, newest first; push-only

  std::mutex mu;             // guards what follows
  std::vector<Slab*> spare;  // slabs of threads that exited, counts and all
  std::uint32_t next_block = 0;
  std::vector<std::uint32_t> free_blocks;  // zeroed in every slab
  // Written (under mu, with atomic additions) by threads whose own slab is
  // already handed back: thread-local destructors that still count.
  Slab* late;

  State() : late(MakeSlab()) {}

  Slab* MakeSlab() {
    auto* slab = new Slab();
    slab->next = all.load(std::memory_order_relaxed);
    while (!all.compare_exchange_weak(slab->next, slab, std::memory_order_release,
                                      std::memory_order_relaxed)) {
    }
    return slab;
  }
};

State& TheState() {
  static auto* state = new State();
  return *state;
}

// The calling thread's slab; nullptr before its first count and after its
// slab was handed back at thread exit. Initial-exec: one load at a fixed
// offset from the thread pointer (libdisco is loaded with the program).
[[gnu::tls_model("initial-exec")]] thread_local Slab* t_slab = nullptr;
[[gnu::tls_model("initial-exec")]] thread_local bool t_exited = false;

// Owns the thread's slab and hands it back when the thread exits.
struct Lease {
  Slab* slab;

  Lease() {
    State& state = TheState();
    {
      std::lock_guard lock(state.mu);
      if (!state.spare.empty()) {
        slab = state.spare.back();
        state.spare.pop_back();
        return;
      }
    }
    slab = state.MakeSlab();
  }
  ~Lease() {
    t_slab = nullptr;
    t_exited = true;
    State& state = TheState();
    std::lock_guard lock(state.mu);
    state.spare.push_back(slab);  // the mutex orders our writes before the next owner's
  }
};

void AddLate(std::uint32_t block, std::size_t counter, std::uint64_t n) {
  State& state = TheState();
  std::lock_guard lock(state.mu);
  Slab::Cell(state.late->Make(block), block, counter).fetch_add(n, std::memory_order_relaxed);
}

}  // namespace

ThreadCounters::ThreadCounters() {
  State& state = TheState();
  std::lock_guard lock(state.mu);
  if (!state.free_blocks.empty()) {
    block_ = state.free_blocks.back();
    state.free_blocks.pop_back();
    return;
  }
  if (state.next_block >= kMaxBlocks) throw std::bad_alloc();
  // Room for every block there is, so that the destructor never allocates.
  if (state.free_blocks.capacity() <= state.next_block)
    state.free_blocks.reserve(std::max<std::size_t>(2 * state.free_blocks.capacity(), 1024));
  block_ = state.next_block++;
}

ThreadCounters::~ThreadCounters() {
  State& state = TheState();
  // Nobody adds to a block whose object is being destroyed, and the next
  // owner receives it through the mutex below, after these stores.
  for (Slab* slab = state.all.load(std::memory_order_acquire); slab != nullptr; slab = slab->next) {
    if (Page* page = slab->Find(block_))
      for (std::size_t counter = 0; counter < kMax; ++counter)
        Slab::Cell(*page, block_, counter).store(0, std::memory_order_relaxed);
  }
  std::lock_guard lock(state.mu);
  state.free_blocks.push_back(block_);
}

void ThreadCounters::Add(std::size_t counter, std::uint64_t n) noexcept {
  Slab* slab = t_slab;
  if (slab == nullptr) [[unlikely]] {
    if (t_exited) return AddLate(block_, counter, n);
    thread_local Lease lease;
    slab = t_slab = lease.slab;
  }
  Page* page = slab->Find(block_);
  if (page == nullptr) [[unlikely]]
    page = &slab->Make(block_);
  // This thread is the only writer of its slab: a plain load and store.
  auto& cell = Slab::Cell(*page, block_, counter);
  cell.store(cell.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

std::uint64_t ThreadCounters::Load(std::size_t counter) const noexcept {
  std::uint64_t sum = 0;
  for (Slab* slab = TheState().all.load(std::memory_order_acquire); slab != nullptr;
       slab = slab->next) {
    if (Page* page = slab->Find(block_))
      sum += Slab::Cell(*page, block_, counter).load(std::memory_order_relaxed);
  }
  return sum;
}

}  // namespace disco
