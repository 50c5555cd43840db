// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * memwatch kernel side: per-process accounting of mmap, munmap, brk and mremap, process exits and
 * OOM kills. Calls are accounted at syscall exit, so only successful ones count and results
 * (mapped address, new break) are known; the arguments are read from the saved user registers
 * then, and brk's old break is the one recorded at the process's previous brk (seeded at fork,
 * exec and attach).
 *
 * Two attach modes share every handler: per-syscall exit tracepoints (cheapest for the rest of
 * the system, need tracefs) and the raw sys_exit tracepoint (no tracefs; runs for every syscall).
 * Python turns one set off before load.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "memwatch.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Syscall numbers of the 64-bit ABI, for the raw sys_exit mode (attach mode 2). */
#if defined(__TARGET_ARCH_x86)
#define NR_MMAP 9
#define NR_MUNMAP 11
#define NR_BRK 12
#define NR_MREMAP 25
#elif defined(__TARGET_ARCH_arm64)
#define NR_MMAP 222
#define NR_MUNMAP 215
#define NR_BRK 214
#define NR_MREMAP 216
#else
#error "memwatch: set __TARGET_ARCH_x86 or __TARGET_ARCH_arm64"
#endif

const volatile struct mw_config cfg = {
	.event_threshold = 1024,
	.page_size = 4096,
	.wakeup_bytes = 65536,
	.events_per_sec = 1000,
	.pidns_ino = 0,
	.map_quota = 32768,
	.stacks_per_sec = 1000,
};

/* Set by memwatch's consumer while it is over its global budget of call events per second: call
 * events are withheld (and counted) until it clears it, so no storm can take the consumer's time;
 * the counts stay exact and exits still stream. A global variable: read without a map lookup. */
volatile __u32 calls_paused = 0;

/* The arguments of the syscall that is returning. */
struct mw_args {
	__u64 a0, a1, a2, a3, a4;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct mw_proc_stats);
} proc_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 131072);
	__type(key, struct mw_alloc_key);
	__type(value, struct mw_alloc);
} active_allocs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mw_counters);
} counters SEC(".maps");

/* Call events: many, and lossy by design (thresholds, budgets). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} mem_events SEC(".maps");

/* Exits and OOM kills: a ring of their own, so that no storm of call events can crowd them out. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} life_events SEC(".maps");

/* Calls of the stack targets with their user stacks (see struct mw_stack_event). A ring of its own:
 * records are large, and neither the call events' budget nor their losses may touch them. Sized
 * by memwatch before load: one page unless stacks were asked for. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 23);
} stack_events SEC(".maps");

/* The processes whose calls carry their stacks, by the tgid memwatch shows. Looked up only for
 * processes flagged in their counters (mw_proc_stats.stacks): every other process pays one load
 * and a branch on a value the handler has already loaded. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct mw_stack_target);
} stack_targets SEC(".maps");

/* The processes that made a traced call since memwatch attached, a bit each by tgid (in the initial
 * pid namespace): dump_tasks looks up the counters of these alone, where a task-storage lookup for
 * every process cost more than the rest of its record (~0.2 us: the storage's cache misses). A bit
 * is set at a process's first call and cleared when it exits; one left set (by a process whose
 * pid was reused) costs a lookup, never a figure. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MW_PID_MAX_LIMIT / 64);
	__type(key, __u32);
	__type(value, __u64);
} called_tgids SEC(".maps");

static __always_inline __u64 *called_word(__u32 tgid)
{
	__u32 word = tgid / 64;

	return bpf_map_lookup_elem(&called_tgids, &word);
}

/* Keep the shared types in the object's BTF even where no map names them, for the layout check. */
struct mw_call_event _mw_call_event = {};
struct mw_exit_event _mw_exit_event = {};
struct mw_oom_event _mw_oom_event = {};
struct mw_config _mw_config = {};
struct mw_stack_event _mw_stack_event = {};

static __always_inline void count(__u32 idx)
{
	__u32 zero = 0;
	struct mw_counters *c = bpf_map_lookup_elem(&counters, &zero);

	if (c && idx < MW_CNT_MAX)
		c->c[idx]++;
}

static __always_inline __u64 page_round(__u64 len)
{
	return (len + cfg.page_size - 1) & ~(cfg.page_size - 1);
}

static __always_inline bool is_err(long ret)
{
	return ret < 0 && ret >= -MAX_ERRNO;
}

/*
 * A pid as memwatch's /proc shows it. In the initial pid namespace that is the kernel's own
 * number; memwatch in a container (cfg.pidns_ino set) needs the number at its namespace's level
 * of the pid, and a task outside that namespace has none (0): it is not memwatch's to show.
 *
 * CO-RE: struct pid ends with numbers[], one struct upid per level; older kernels declare it
 * numbers[1], newer ones a flexible array. Only the offset of numbers is relocated; the element
 * size is the compiled one, which is safe because struct upid has been { nr, ns } since pid
 * namespaces came (2.6.24), and pid_namespace has embedded its ns_common as ns since 3.19.
 */
static __always_inline __u32 ns_pid(struct pid *pid)
{
	unsigned int level = BPF_CORE_READ(pid, level);

	for (int i = 0; i < MW_MAX_PIDNS_LEVEL; i++) {
		struct upid up;

		if (i > level)
			break;
		if (bpf_core_read(&up, sizeof(up), &pid->numbers[i]))
			return 0;
		if (BPF_CORE_READ(up.ns, ns.inum) == cfg.pidns_ino)
			return up.nr;
	}
	return 0;
}

/* tgid and tid of a task for an event or a record; false when the task has no pid in memwatch's
 * namespace. The verifier prunes the translation away when memwatch runs in the initial one. */
static __always_inline bool visible_ids(struct task_struct *task, __u32 *tgid, __u32 *tid)
{
	if (!cfg.pidns_ino) {
		*tgid = BPF_CORE_READ(task, tgid);
		*tid = BPF_CORE_READ(task, pid);
		return true;
	}
	*tgid = ns_pid(BPF_CORE_READ(task, group_leader, thread_pid));
	*tid = ns_pid(BPF_CORE_READ(task, thread_pid));
	return *tgid != 0;
}

/* Counters for a process (its group leader) not seen before. The break is seeded from its mm so
 * that a later brk knows where it started; 0 (unknown) when the caller is that brk itself, whose
 * mm already holds the new break. */
static __always_inline struct mw_proc_stats *create_stats(struct task_struct *leader, bool seed_brk)
{
	struct mw_proc_stats fresh = {};
	struct mw_proc_stats *st;
	struct mm_struct *mm = leader->mm;

	fresh.start_boottime_ns = leader->start_boottime;   /* real_start_time before 5.5: no fallback needed */
	fresh.first_seen_ns = bpf_ktime_get_boot_ns();
	fresh.ns_tgid = cfg.pidns_ino ? ns_pid(leader->thread_pid) : leader->tgid;
	if (seed_brk && mm)
		fresh.brk_last = mm->brk;
	BPF_CORE_READ_STR_INTO(&fresh.comm, leader, comm);
	st = bpf_task_storage_get(&proc_stats, leader, &fresh, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!st)   /* another thread of the process created them first, or out of memory */
		st = bpf_task_storage_get(&proc_stats, leader, 0, 0);
	if (!st)
		count(MW_CNT_STATS_FULL);
	return st;
}

/* The stats of the current process (on its group leader), created on first sight; NULL when no
 * memory could be had for them. */
static __always_inline struct mw_proc_stats *stats_of(struct task_struct *task, bool seed_brk)
{
	struct task_struct *leader = task->group_leader;
	struct mw_proc_stats *st = bpf_task_storage_get(&proc_stats, leader, 0, 0);

	/* create_stats is a separate step: clang zeroes its scratch where it is declared */
	return st ? st : create_stats(leader, seed_brk);
}

/* Whether the process made a traced call (a successful or a failed one) since memwatch attached. */
static __always_inline bool active(struct mw_proc_stats *st)
{
	return st->mmap_count | st->munmap_count | st->brk_count | st->mremap_count | st->failed_calls;
}

static __always_inline void add_outstanding(struct mw_proc_stats *st, __s64 delta)
{
	__s64 now_out = __sync_add_and_fetch(&st->outstanding_bytes, delta);

	if (now_out > 0 && (__u64)now_out > st->outstanding_peak)
		st->outstanding_peak = now_out;
}

/* Per-process budget of call events per second: counts stay exact, the stream stays affordable. */
static __always_inline bool event_allowed(struct mw_proc_stats *st, __u64 now, __u64 size)
{
	if (size < cfg.event_threshold)
		return false;
	if (calls_paused) {
		__sync_fetch_and_add(&st->events_throttled, 1);
		count(MW_CNT_PAUSED);
		return false;
	}
	if (!cfg.events_per_sec)
		return true;
	if (now - st->rl_window_ns >= MW_RATE_WINDOW_NS) {
		st->rl_window_ns = now;
		st->rl_count = 0;
	}
	if (st->rl_count >= cfg.events_per_sec) {
		__sync_fetch_and_add(&st->events_throttled, 1);
		count(MW_CNT_THROTTLED);
		return false;
	}
	st->rl_count++;
	return true;
}

/* Wake the consumer when the data waiting in the ring crosses wakeup_bytes, once: while it is
 * still catching up, a wakeup for every further record would cost each one an irq_work (the
 * records that follow a stalled consumer cost 8 us each that way). It also drains on a timer. */
static __always_inline __u64 wakeup_flags(void *ring, __u32 counter, __u64 size)
{
	__u64 avail = bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA);   /* this record included */

	if (avail >= cfg.wakeup_bytes && avail < cfg.wakeup_bytes + size) {
		count(counter);
		return BPF_RB_FORCE_WAKEUP;
	}
	return BPF_RB_NO_WAKEUP;
}

static __always_inline void fill_header(struct mw_event_header *h, __u32 kind, __u32 tgid, __u32 tid,
					__u64 ts)
{
	h->kind = kind;
	h->tgid = tgid;
	h->tid = tid;
	h->_pad = 0;
	h->ts_ns = ts;
}

static __always_inline void emit_call(struct mw_proc_stats *st, __u32 kind, struct task_struct *task,
				      __u64 addr, __u64 len, __u64 new_addr, __u64 new_len,
				      __u32 flags, __u32 prot)
{
	struct mw_call_event *e = bpf_ringbuf_reserve(&mem_events, sizeof(*e), 0);
	__u32 tid;

	if (!e) {
		count(MW_CNT_DROPPED);
		return;
	}
	tid = cfg.pidns_ino ? ns_pid(task->thread_pid) : task->pid;
	fill_header(&e->hdr, kind, st->ns_tgid, tid, bpf_ktime_get_boot_ns());
	e->addr = addr;
	e->len = len;
	e->new_addr = new_addr;
	e->new_len = new_len;
	e->flags = flags;
	e->prot = prot;
	__builtin_memcpy(e->comm, st->comm, sizeof(e->comm));
	__sync_fetch_and_add(&st->events_sent, 1);
	count(MW_CNT_EVENTS);
	bpf_ringbuf_submit(e, wakeup_flags(&mem_events, MW_CNT_WAKEUPS, sizeof(*e)));
}

/* A mapping as a live slot (see struct mw_proc_stats), or 0 when it does not fit one. */
static __always_inline __u64 slot_pack(__u64 start, __u64 len)
{
	if (!len || ((start | len) & ((1ULL << MW_SLOT_PAGE_SHIFT) - 1)) || start >= MW_SLOT_START_LIMIT ||
	    len >= MW_SLOT_LEN_LIMIT)
		return 0;
	return (start >> MW_SLOT_PAGE_SHIFT) | ((len >> MW_SLOT_PAGE_SHIFT) << MW_SLOT_LEN_SHIFT);
}

static __always_inline __u64 slot_start(__u64 v)
{
	return (v & ((1ULL << MW_SLOT_LEN_SHIFT) - 1)) << MW_SLOT_PAGE_SHIFT;
}

static __always_inline __u64 slot_len(__u64 v)
{
	return (v >> MW_SLOT_LEN_SHIFT) << MW_SLOT_PAGE_SHIFT;
}

/* Follow a mapping in active_allocs; false when it cannot be: the map is full, or the process
 * holds its quota of entries (so that no one process can starve the others of the map). */
static __always_inline bool alloc_insert(struct mw_proc_stats *st, __u32 tgid, __u64 mm, __u64 start,
					 __u64 len)
{
	struct mw_alloc_key k = { .tgid = tgid, .addr = start };
	struct mw_alloc v = { .len = len, .mm = mm };

	if (st->map_entries >= cfg.map_quota) {
		count(MW_CNT_ALLOCS_QUOTA);
		return false;
	}
	if (!bpf_map_update_elem(&active_allocs, &k, &v, BPF_NOEXIST)) {
		__sync_fetch_and_add(&st->map_entries, 1);
		return true;
	}
	/* an entry left at that address (a stale one, or one an unresolved unmap left) is replaced */
	if (!bpf_map_update_elem(&active_allocs, &k, &v, BPF_EXIST))
		return true;
	count(MW_CNT_ALLOCS_FULL);
	return false;
}

/* Forget this process's entry at addr; true when there was one. */
static __always_inline bool alloc_delete(struct mw_proc_stats *st, struct mw_alloc_key *k)
{
	if (bpf_map_delete_elem(&active_allocs, k))
		return false;
	if (st->map_entries)
		__sync_fetch_and_sub(&st->map_entries, 1);
	return true;
}

/* A traced mapping memwatch can no longer follow. Its bytes leave outstanding_bytes (if they were
 * in it), which then counts only followed mappings: a lower bound, marked incomplete by
 * lost_mappings, instead of a figure that never comes down when the mapping goes. */
static __always_inline void lose(struct mw_proc_stats *st, __u64 len, bool in_outstanding)
{
	__sync_fetch_and_add(&st->lost_mappings, 1);
	__sync_fetch_and_add(&st->lost_bytes, len);
	if (in_outstanding)
		__sync_fetch_and_add(&st->outstanding_bytes, -(__s64)len);
}

/*
 * Follow a new mapping; false when it cannot be followed (counted as lost; the caller then leaves
 * it out of outstanding_bytes). It takes the next live slot (each thread claims its own slot
 * index atomically); the mapping it pushes out, if still live, moves to active_allocs. The
 * pushed-out mapping is inserted there before the slot changes, so a munmap that loses the race
 * for the slot finds it in the map; if the munmap wins, the insert is undone.
 */
static __always_inline bool track(struct mw_proc_stats *st, __u32 tgid, __u64 mm, __u64 start, __u64 len)
{
	__u64 packed = slot_pack(start, len);
	__u32 i;

	if (packed) {
		i = __sync_fetch_and_add(&st->live_next, 1) % MW_LIVE_SLOTS;
		for (int tries = 0; tries < 2; tries++) {
			__u64 old = st->live[i];
			bool moved = old && alloc_insert(st, tgid, mm, slot_start(old), slot_len(old));

			if (__sync_val_compare_and_swap(&st->live[i], old, packed) == old) {
				if (old && !moved)
					lose(st, slot_len(old), true);
				return true;
			}
			if (moved) {
				struct mw_alloc_key k = { .tgid = tgid, .addr = slot_start(old) };

				alloc_delete(st, &k);
			}
		}
	}
	if (alloc_insert(st, tgid, mm, start, len))
		return true;
	lose(st, len, false);
	return false;
}

/* The live slot holding a mapping that starts at addr (its packed value in *val), or
 * MW_LIVE_SLOTS when none does. */
static __always_inline int slot_at(struct mw_proc_stats *st, __u64 addr, __u64 *val)
{
	int i;

	for (i = 0; i < MW_LIVE_SLOTS; i++) {
		__u64 s = st->live[i];

		if (s && slot_start(s) == addr) {
			*val = s;
			break;
		}
	}
	return i;
}

/* Whether a traced mapping starts at addr. */
static __always_inline bool tracked_at(struct mw_proc_stats *st, __u32 tgid, __u64 mm, __u64 addr)
{
	struct mw_alloc_key k = { .tgid = tgid, .addr = addr };
	struct mw_alloc *v;
	__u64 s;

	if (slot_at(st, addr, &s) < MW_LIVE_SLOTS)
		return true;
	v = bpf_map_lookup_elem(&active_allocs, &k);
	return v && v->mm == mm;
}

/*
 * Forget the tracked mappings inside [start, end) and return how many of those bytes were tracked.
 * Resolved: whole mappings (up to MW_MAX_SPAN adjacent ones), a mapping's head (the range starts at
 * a mapping's start) and, for mappings still in the process's live slots, a mapping's tail (the
 * range ends at its end). Not resolved: a hole punched strictly inside a mapping, a range starting
 * inside one mapping and running into the next, and the tail of an older mapping; those bytes count
 * as untracked and the mapping keeps its length until it is unmapped (see README).
 */
static __always_inline __u64 untrack(struct mw_proc_stats *st, __u32 tgid, __u64 mm, __u64 start, __u64 end)
{
	struct mw_alloc_key k = { .tgid = tgid };
	__u64 cur = start, removed = 0;

	for (int i = 0; i < MW_MAX_SPAN; i++) {
		struct mw_alloc *v;
		__u64 mend, s = 0;
		int j;

		if (cur >= end)
			break;
		j = slot_at(st, cur, &s);
		if (j < MW_LIVE_SLOTS) {
			/* a whole mapping, or the head of a longer one, which then starts at end */
			mend = cur + slot_len(s);
			if (__sync_val_compare_and_swap(&st->live[j], s, mend <= end ? 0 : slot_pack(end, mend - end)) == s) {
				removed += (mend <= end ? mend : end) - cur;
				cur = mend <= end ? mend : end;
				continue;
			}
			/* pushed out meanwhile: it is in active_allocs now */
		}

		k.addr = cur;
		v = bpf_map_lookup_elem(&active_allocs, &k);
		if (!v)
			break;
		mend = cur + v->len;
		if (v->mm != mm) {
			alloc_delete(st, &k);
			count(MW_CNT_STALE_ALLOCS);
			break;
		}
		alloc_delete(st, &k);
		if (mend <= end) {
			removed += mend - cur;
			cur = mend;
			continue;
		}
		/* head of a longer mapping: it now starts at end */
		removed += end - cur;
		if (!alloc_insert(st, tgid, mm, end, mend - end))
			lose(st, mend - end, true);
		cur = end;
	}
	if (cur >= end)
		return removed;

	/* the tail of a mapping in a live slot that starts before cur */
	for (int i = 0; i < MW_LIVE_SLOTS; i++) {
		__u64 s = st->live[i], ms = slot_start(s);

		if (!s || ms >= cur || ms + slot_len(s) != end)
			continue;
		if (__sync_val_compare_and_swap(&st->live[i], s, slot_pack(ms, cur - ms)) == s)
			removed += end - cur;
		break;
	}
	return removed;
}

/* ---- stacks of the processes memwatch was asked to look at (stack_targets) ---- */

/* Copy the user registers at the system call and the user stack around the stack pointer into the
 * ring record: MW_STACK_BYTES from the start of the stack pointer's page, a page at a time, up to
 * the first page that cannot be read (the end of the stack's mapping, or a page never touched: the
 * kernel leaves a random gap of up to 8 KB below the strings at the top of a main thread's stack).
 * Page-sized reads at fixed offsets need no bound checks the verifier cannot follow, and no VMA
 * lookup. */
static __always_inline void copy_user_stack(struct mw_stack_event *e, struct task_struct *task)
{
#if defined(__TARGET_ARCH_x86)
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	__u64 base;
	__u32 len = 0;

	/* DWARF register numbers: rax rdx rcx rbx rsi rdi rbp rsp r8-r15, then the return address */
	e->regs[0] = regs->ax;
	e->regs[1] = regs->dx;
	e->regs[2] = regs->cx;
	e->regs[3] = regs->bx;
	e->regs[4] = regs->si;
	e->regs[5] = regs->di;
	e->regs[6] = regs->bp;
	e->regs[7] = regs->sp;
	e->regs[8] = regs->r8;
	e->regs[9] = regs->r9;
	e->regs[10] = regs->r10;
	e->regs[11] = regs->r11;
	e->regs[12] = regs->r12;
	e->regs[13] = regs->r13;
	e->regs[14] = regs->r14;
	e->regs[15] = regs->r15;
	e->regs[16] = regs->ip;
	base = regs->sp & ~(__u64)(MW_STACK_PAGE - 1);
	e->stack_skip = regs->sp - base;
#pragma unroll
	for (int i = 0; i < MW_STACK_BYTES / MW_STACK_PAGE; i++) {
		if (bpf_probe_read_user(e->stack + i * MW_STACK_PAGE, MW_STACK_PAGE, (void *)(base + i * MW_STACK_PAGE)))
			break;
		len += MW_STACK_PAGE;
	}
	e->stack_len = len;
#else
	e->stack_len = 0;   /* unwinding is implemented for x86-64 only */
	e->stack_skip = 0;
#endif
}

/* A call as emit_stack takes it (a BPF function has at most five arguments). */
struct stack_call_args {
	__u64 addr, len, new_addr, new_len;
	__u32 call, flags;
};

static __always_inline void fill_stack_call(struct mw_stack_call *c, __u32 rec, struct mw_proc_stats *st,
					    struct task_struct *task, struct stack_call_args *a)
{
	__u32 tid = cfg.pidns_ino ? ns_pid(task->thread_pid) : task->pid;

	fill_header(&c->hdr, rec, st->ns_tgid, tid, bpf_ktime_get_boot_ns());
	c->call = a->call;
	c->flags = a->flags;
	c->addr = a->addr;
	c->len = a->len;
	c->new_addr = a->new_addr;
	c->new_len = a->new_len;
}

/*
 * A call of a stack target: with its stack within the target's budget, without it beyond (user
 * space still follows the address ranges exactly). Not inlined: the four call sites share one
 * copy, and the handlers of every other process carry none of it. A flagged process that is no
 * longer a target (user space removed it, or the pid was reused) is unflagged here.
 */
static __noinline void emit_stack(struct mw_proc_stats *st, struct stack_call_args *a)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 key = st->ns_tgid;
	struct mw_stack_target *t = bpf_map_lookup_elem(&stack_targets, &key);
	struct mw_stack_call *c;
	bool allowed = true;

	if (!t || t->start_boottime_ns != st->start_boottime_ns) {
		st->stacks = 0;
		return;
	}
	if (cfg.stacks_per_sec) {
		__u64 now = bpf_ktime_get_boot_ns();

		if (now - t->rl_window_ns >= MW_RATE_WINDOW_NS) {
			t->rl_window_ns = now;
			t->rl_count = 0;
		}
		allowed = t->rl_count < cfg.stacks_per_sec;
		if (allowed)
			__sync_fetch_and_add(&t->rl_count, 1);
	}
	if (allowed) {
		struct mw_stack_event *e = bpf_ringbuf_reserve(&stack_events, sizeof(*e), 0);

		if (e) {
			fill_stack_call(&e->c, MW_EV_STACK, st, task, a);
			copy_user_stack(e, task);
			__sync_fetch_and_add(&t->captured, 1);
			bpf_ringbuf_submit(e, wakeup_flags(&stack_events, MW_CNT_WAKEUPS, sizeof(*e)));
			return;
		}
	} else {
		__sync_fetch_and_add(&t->throttled, 1);
	}
	c = bpf_ringbuf_reserve(&stack_events, sizeof(*c), 0);
	if (!c) {
		__sync_fetch_and_add(&t->dropped, 1);
		return;
	}
	if (allowed)   /* the ring had no room for the stack, but has for the call */
		__sync_fetch_and_add(&t->dropped, 1);
	fill_stack_call(c, MW_EV_STACK_CALL, st, task, a);
	bpf_ringbuf_submit(c, 0);
}

/*
 * The arguments of the syscall that is returning. The saved user registers still hold them at
 * syscall exit (only the return value register is written; arm64 keeps the first argument in
 * orig_x0), so no call needs an entry program or per-thread scratch. The registers come from
 * bpf_task_pt_regs in attach mode 1: that helper needs 5.15 ("bpf: Add bpf_task_pt_regs()
 * helper"), the oldest kernel memwatch supports.
 */
static __always_inline void syscall_args(struct pt_regs *regs, struct mw_args *in)
{
	in->a0 = PT_REGS_PARM1_SYSCALL(regs);
	in->a1 = PT_REGS_PARM2_SYSCALL(regs);
	in->a2 = PT_REGS_PARM3_SYSCALL(regs);
	in->a3 = PT_REGS_PARM4_SYSCALL(regs);
	in->a4 = PT_REGS_PARM5_SYSCALL(regs);
}

/* The successful call that is returning, as each accounting helper below takes it. */
struct mw_call {
	struct task_struct *task;
	struct mw_proc_stats *st;   /* its process's counters */
	struct mw_args in;          /* its arguments */
	long ret;
	__u64 mm;                   /* the caller's mm_struct: live-mapping entries of another are stale */
	__u64 now;                  /* st->last_seen_ns: exact to a jiffy */
	__u32 tgid;                 /* in the initial pid namespace, as active_allocs keys it */
};

/* Stream the call (within the event budget, if it moved at least event_threshold bytes) and, for
 * a stack target, its user stack. */
static __always_inline void report(struct mw_call *c, struct stack_call_args *a, __u64 size, __u32 prot)
{
	struct mw_proc_stats *st = c->st;

	if (event_allowed(st, c->now, size))
		emit_call(st, a->call, c->task, a->addr, a->len, a->new_addr, a->new_len, a->flags, prot);
	if (st->stacks)
		emit_stack(st, a);
}

/* brk returns the new break, or the old one when it failed or was a query (brk(0)); the call is
 * judged by it alone, failed ones included. The old break is the one recorded last time (or
 * seeded at exec, fork or attach): the kernel changes a process's break only through brk, under
 * its mmap lock. */
static __always_inline void account_brk(struct mw_call *c)
{
	struct mw_proc_stats *st = c->st;
	__u64 nb = (__u64)c->ret;
	__u64 ob = __sync_lock_test_and_set(&st->brk_last, nb);
	struct stack_call_args a = { .call = MW_EV_BRK, .addr = ob, .new_addr = nb };

	if (!ob) {
		if (c->in.a0)
			count(MW_CNT_BRK_UNSEEN);
		return;
	}
	if (nb == ob) {
		if (c->in.a0 && c->in.a0 != ob)
			__sync_fetch_and_add(&st->failed_calls, 1);
		return;
	}
	__sync_fetch_and_add(&st->brk_count, 1);
	if (nb > ob)
		__sync_fetch_and_add(&st->brk_grow_bytes, nb - ob);
	else
		__sync_fetch_and_add(&st->brk_shrink_bytes, ob - nb);

	report(c, &a, nb > ob ? nb - ob : ob - nb, 0);
}

/* mmap(addr, len, prot, flags, fd, off) returned the mapping's address. */
static __always_inline void account_mmap(struct mw_call *c)
{
	struct mw_proc_stats *st = c->st;
	__u64 addr = (__u64)c->ret, len = page_round(c->in.a1);
	struct stack_call_args a = { .call = MW_EV_MMAP, .addr = addr, .len = len, .flags = c->in.a3 };

	__sync_fetch_and_add(&st->mmap_count, 1);
	__sync_fetch_and_add(&st->mmap_bytes, len);
	if (c->in.a3 & MAP_FIXED) {
		/* MAP_FIXED replaced whatever was mapped there */
		__u64 gone = untrack(st, c->tgid, c->mm, addr, addr + len);

		if (gone)
			add_outstanding(st, -(__s64)gone);
	}
	if (track(st, c->tgid, c->mm, addr, len))
		add_outstanding(st, len);

	report(c, &a, len, (__u32)c->in.a2);
}

/* munmap(addr, len): bytes no traced mapping accounted for count as untracked. */
static __always_inline void account_munmap(struct mw_call *c)
{
	struct mw_proc_stats *st = c->st;
	__u64 addr = c->in.a0, len = page_round(c->in.a1);
	__u64 gone = untrack(st, c->tgid, c->mm, addr, addr + len);
	struct stack_call_args a = { .call = MW_EV_MUNMAP, .addr = addr, .len = len };

	__sync_fetch_and_add(&st->munmap_count, 1);
	__sync_fetch_and_add(&st->munmap_bytes, len);
	if (gone)
		add_outstanding(st, -(__s64)gone);
	if (len > gone)
		__sync_fetch_and_add(&st->untracked_unmap_bytes, len - gone);

	report(c, &a, len, 0);
}

/* mremap(old_addr, old_len, new_len, flags, new_addr) returned the new address. A traced
 * mapping moved or resized whole stays traced. */
static __always_inline void account_mremap(struct mw_call *c)
{
	struct mw_proc_stats *st = c->st;
	__u64 old_addr = c->in.a0, old_len = page_round(c->in.a1), new_len = page_round(c->in.a2);
	__u64 new_addr = (__u64)c->ret, gone;
	struct stack_call_args a = { .call = MW_EV_MREMAP, .addr = old_addr, .len = old_len,
				     .new_addr = new_addr, .new_len = new_len, .flags = c->in.a3 };

	__sync_fetch_and_add(&st->mremap_count, 1);
	if (new_len > old_len)
		__sync_fetch_and_add(&st->mremap_grow_bytes, new_len - old_len);
	else
		__sync_fetch_and_add(&st->mremap_shrink_bytes, old_len - new_len);
	if (c->in.a3 & MREMAP_DONTUNMAP) {
		/* the old range stays mapped (emptied); the new one is extra */
		if (tracked_at(st, c->tgid, c->mm, old_addr) && track(st, c->tgid, c->mm, new_addr, new_len))
			add_outstanding(st, new_len);
	} else {
		gone = untrack(st, c->tgid, c->mm, old_addr, old_addr + old_len);
		if (gone == old_len && old_len) {
			if (track(st, c->tgid, c->mm, new_addr, new_len))
				add_outstanding(st, (__s64)new_len - (__s64)gone);
			else
				add_outstanding(st, -(__s64)gone);
		} else if (gone) {
			add_outstanding(st, -(__s64)gone);
		}
	}

	report(c, &a, new_len > old_len ? new_len : old_len, 0);
}

/* Every traced syscall's exit, in either attach mode: find the process's counters, then account
 * the call with its syscall's helper. */
static __always_inline int on_exit(__u32 kind, long ret, struct pt_regs *regs)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct mw_call c;
	__u64 jiffies;

#ifdef MW_BENCH_EMPTY
	return 0;   /* bench/bench_tracer.py: the cost of attaching alone, the floor of this design */
#endif
	syscall_args(regs, &c.in);
	c.task = task;
	c.ret = ret;
	/* the task's own field: a helper call less than bpf_get_current_pid_tgid(). Keys of
	 * active_allocs use the initial namespace's tgid; events translate (visible_ids). */
	c.tgid = task->tgid;
	c.st = stats_of(task, kind != MW_EV_BRK);
	if (!c.st)
		return 0;
	/* memwatch in a container follows the processes it can show, and no others: a process without
	 * a pid there could never be listed, nor its mappings swept (see Tracer.forget_processes) */
	if (cfg.pidns_ino && !c.st->ns_tgid)
		return 0;
	/* Reading the clock costs more than the rest of the bookkeeping (~80 ns in a VM): read it
	 * once per jiffy per process; last_seen_ns is then exact to a jiffy, which is all the rate
	 * limiter and "last seen" need. Streamed events read it themselves. */
	jiffies = bpf_jiffies64();
	if (c.st->last_seen_jiffies != jiffies) {
		c.st->last_seen_jiffies = jiffies;
		c.st->last_seen_ns = bpf_ktime_get_boot_ns();
	}
	c.now = c.st->last_seen_ns;
	c.mm = (__u64)task->mm;
	if (!c.st->called) {   /* before anything is counted: see called_tgids */
		__u64 *w = called_word(c.tgid);

		if (w)
			__sync_fetch_and_or(w, 1ULL << (c.tgid % 64));
		c.st->called = 1;
	}

	if (kind == MW_EV_BRK) {   /* judged by its result alone: see account_brk */
		account_brk(&c);
		return 0;
	}
	if (is_err(ret)) {
		__sync_fetch_and_add(&c.st->failed_calls, 1);
		return 0;
	}
	if (kind == MW_EV_MMAP)
		account_mmap(&c);
	else if (kind == MW_EV_MUNMAP)
		account_munmap(&c);
	else if (kind == MW_EV_MREMAP)
		account_mremap(&c);
	return 0;
}

/* ---- attach mode 1: per-syscall tracepoints (need tracefs) ---- */

SEC("tracepoint/syscalls/sys_exit_mmap")
int tp_exit_mmap(struct trace_event_raw_sys_exit *ctx)
{
	return on_exit(MW_EV_MMAP, ctx->ret, (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf()));
}

SEC("tracepoint/syscalls/sys_exit_munmap")
int tp_exit_munmap(struct trace_event_raw_sys_exit *ctx)
{
	return on_exit(MW_EV_MUNMAP, ctx->ret, (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf()));
}

SEC("tracepoint/syscalls/sys_exit_mremap")
int tp_exit_mremap(struct trace_event_raw_sys_exit *ctx)
{
	return on_exit(MW_EV_MREMAP, ctx->ret, (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf()));
}

SEC("tracepoint/syscalls/sys_exit_brk")
int tp_exit_brk(struct trace_event_raw_sys_exit *ctx)
{
	return on_exit(MW_EV_BRK, ctx->ret, (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf()));
}

/* ---- attach mode 2: the raw sys_exit tracepoint (no tracefs; runs for every syscall) ---- */

static __always_inline __u32 kind_of(long nr)
{
	switch (nr) {
	case NR_MMAP: return MW_EV_MMAP;
	case NR_MUNMAP: return MW_EV_MUNMAP;
	case NR_BRK: return MW_EV_BRK;
	case NR_MREMAP: return MW_EV_MREMAP;
	}
	return 0;
}

static __always_inline bool compat_syscall(void)
{
#if defined(__TARGET_ARCH_x86)
	struct task_struct *task = bpf_get_current_task_btf();

	/* 32-bit syscalls use other numbers; the per-syscall tracepoints skip them too. CO-RE: x86
	 * keeps TS_COMPAT in thread_info.status, and thread_info inside task_struct
	 * (THREAD_INFO_IN_TASK, every x86 kernel since 4.9); arm64 has no 32-bit path to skip here. */
	return task->thread_info.status & TS_COMPAT;
#else
	return false;
#endif
}

SEC("tp_btf/sys_exit")
int BPF_PROG(raw_exit, struct pt_regs *regs, long ret)
{
#if defined(__TARGET_ARCH_x86)
	long nr = BPF_CORE_READ(regs, orig_ax);
#else
	long nr = BPF_CORE_READ(regs, syscallno);
#endif
	__u32 kind = kind_of(nr);

	if (!kind || compat_syscall())
		return 0;
	return on_exit(kind, ret, regs);
}

/* ---- process lifecycle ---- */

/* The exec'ing thread is the group leader by now. If it was not the leader before, the old
 * leader's storage went with it and the counters start again; that is rare enough to accept. */
SEC("raw_tp/sched_process_exec")
int handle_exec(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct mw_proc_stats *st = stats_of(task, true);

	if (!st)
		return 0;
	/* the new image starts a new heap */
	st->brk_last = task->mm ? task->mm->brk : 0;
	/* the old image's mappings are gone with its mm; live-mapping entries of it are now stale */
	__sync_lock_test_and_set(&st->outstanding_bytes, 0);
	st->lost_mappings = 0;   /* they marked the old image's figure, which starts again */
	st->lost_bytes = 0;
	for (int i = 0; i < MW_LIVE_SLOTS; i++)
		st->live[i] = 0;
	BPF_CORE_READ_STR_INTO(&st->comm, task, comm);
	if (st->stacks) {
		struct mw_stack_call *c = bpf_ringbuf_reserve(&stack_events, sizeof(*c), 0);

		struct stack_call_args a = {};

		if (c) {
			fill_stack_call(c, MW_EV_STACK_EXEC, st, task, &a);
			bpf_ringbuf_submit(c, 0);
		}
	}
	return 0;
}

SEC("raw_tp/sched_process_exit")
int handle_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct task_struct *leader;
	struct mw_exit_event *e = NULL;
	struct mw_proc_stats *st;
	__u32 tgid, tid;

	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;   /* a thread, not the whole group */

	count(MW_CNT_EXITS);
	leader = task->group_leader;
	st = bpf_task_storage_get(&proc_stats, leader, 0, 0);
	if (visible_ids(task, &tgid, &tid)) {
		e = bpf_ringbuf_reserve(&life_events, sizeof(*e), 0);
		if (!e)
			count(MW_CNT_LIFE_DROPPED);
	}
	if (e) {
		unsigned int sflags = BPF_CORE_READ(task, signal, flags);

		fill_header(&e->hdr, MW_EV_EXIT, tgid, tid, bpf_ktime_get_boot_ns());
		e->start_boottime_ns = BPF_CORE_READ(leader, start_boottime);
		/* exit_group() or a fatal signal set the group's status */
		e->exit_status = (sflags & SIGNAL_GROUP_EXIT) ? BPF_CORE_READ(task, signal, group_exit_code)
						       : BPF_CORE_READ(task, exit_code);
		e->maxrss_pages = BPF_CORE_READ(task, signal, maxrss);
		BPF_CORE_READ_STR_INTO(&e->comm, leader, comm);
		if (st && active(st)) {
			e->has_stats = 1;
			__builtin_memcpy(&e->stats, st, sizeof(e->stats));
		} else {
			e->has_stats = 0;
			__builtin_memset(&e->stats, 0, sizeof(e->stats));
		}
		count(MW_CNT_EVENTS);
		bpf_ringbuf_submit(e, wakeup_flags(&life_events, MW_CNT_LIFE_WAKEUPS, sizeof(*e)));
	}
	/* the leader may linger as a zombie until it is reaped: its counters go now */
	if (st) {
		if (st->called) {
			__u32 tgid = BPF_CORE_READ(leader, tgid);
			__u64 *w = called_word(tgid);

			if (w)
				__sync_fetch_and_and(w, ~(1ULL << (tgid % 64)));
		}
		bpf_task_storage_delete(&proc_stats, leader);
	}
	return 0;
}

/* A new process starts with its parent's break: seed it before it can call brk. Threads share
 * their process's counters and need nothing. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(handle_fork, struct task_struct *parent, struct task_struct *child)
{
#ifdef MW_BENCH_EMPTY
	return 0;
#endif
	if (child->tgid != child->pid || !child->mm)
		return 0;
	create_stats(child, true);
	return 0;
}

/* Run once at attach: seed the break of every process already running (see handle_fork). */
SEC("iter/task")
int seed_stats(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;

	if (!task || task->pid != task->tgid || !task->mm)
		return 0;
	if (!bpf_task_storage_get(&proc_stats, task, 0, 0))
		create_stats(task, true);
	return 0;
}

/* Run by memwatch when its stack targets change: flag the counters of every process in
 * stack_targets (creating them if the process made no call yet) and record which process it is;
 * unflag the others. The handlers look at the flag alone. */
SEC("iter/task")
int mark_stacks(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct mw_stack_target *t;
	struct mw_proc_stats *st;
	__u32 key;

	if (!task || task->pid != task->tgid || !task->mm)
		return 0;
	key = cfg.pidns_ino ? ns_pid(task->thread_pid) : task->tgid;
	t = key ? bpf_map_lookup_elem(&stack_targets, &key) : NULL;
	st = bpf_task_storage_get(&proc_stats, task, 0, 0);
	if (t && (!t->start_boottime_ns || t->start_boottime_ns == task->start_boottime)) {
		if (!st)
			st = create_stats(task, true);
		if (!st)
			return 0;
		t->start_boottime_ns = task->start_boottime;
		st->stacks = 1;
	} else if (st && st->stacks) {
		st->stacks = 0;
	}
	return 0;
}

/* CO-RE: kernels before 6.2 ("mm: convert mm's rss stats into percpu_counter") kept RSS in
 * struct mm_rss_stat, an array of atomics; since then mm->rss_stat is an array of percpu_counters,
 * whose count is the global part only (per-CPU deltas not folded in: it may run a little low).
 * The ___old flavour matches the old layout only on kernels whose BTF has struct mm_rss_stat. */
struct mm_rss_stat___old {
	atomic_long_t count[4];
} __attribute__((preserve_access_index));

struct mm_struct___old {
	struct mm_rss_stat___old rss_stat;
} __attribute__((preserve_access_index));

static __always_inline __u64 rss_pages(struct mm_struct *mm, int member)
{
	if (bpf_core_type_exists(struct mm_rss_stat___old)) {
		struct mm_struct___old *old = (void *)mm;
		long v = BPF_CORE_READ(old, rss_stat.count[member].counter);

		return v > 0 ? v : 0;
	}
	s64 v = BPF_CORE_READ(mm, rss_stat[member].count);

	return v > 0 ? v : 0;
}

/* CO-RE: kernels before 5.5 ("kernfs: convert kernfs_node->id from union kernfs_node_id to u64")
 * kept a kernfs node's id in a union whose low 32 bits were the inode number; since 5.5 it is a
 * u64 that is the inode number itself on 64-bit machines. memwatch needs 5.15 for other reasons
 * (bpf_task_pt_regs), so only the new layout is met; the old one is read right all the same. */
union kernfs_node_id___old {
	struct {
		__u32 ino;
		__u32 generation;
	};
	__u64 id;
} __attribute__((preserve_access_index));

struct kernfs_node___old {
	union kernfs_node_id___old id;
} __attribute__((preserve_access_index));

/*
 * The id of a task's memory cgroup: task->cgroups->subsys[memory_cgrp_id]->cgroup->kn->id, the
 * inode number of the cgroup's directory, which user space maps back to a path. memory_cgrp_id
 * is an enum value that depends on which controllers the kernel was built with (its
 * configuration, not its version): CO-RE reads it from the running kernel's BTF (0 when
 * CONFIG_MEMCG is off), and the index is checked against the running kernel's size of subsys[]. On a v1 memory hierarchy this is
 * the v1 cgroup; on v2, the nearest cgroup that has the memory controller enabled.
 */
static __always_inline int memory_subsys(void)
{
	int memory;

	if (!bpf_core_enum_value_exists(enum cgroup_subsys_id, memory_cgrp_id))
		return -1;
	memory = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
	if (memory < 0 || memory >= bpf_core_field_size(struct css_set, subsys) / sizeof(void *))
		return -1;
	return memory;
}

/* That id read with probe reads, for a task pointer the verifier cannot follow (a raw
 * tracepoint's argument); dump_tasks has its own with plain loads. */
static __always_inline __u64 memcg_id(struct task_struct *task)
{
	struct cgroup_subsys_state *css = NULL;
	struct kernfs_node *kn;
	struct css_set *cset;
	int memory = memory_subsys();

	if (memory < 0)
		return 0;
	cset = BPF_CORE_READ(task, cgroups);
	if (!cset || bpf_core_read(&css, sizeof(css), &cset->subsys[memory]) || !css)
		return 0;
	kn = BPF_CORE_READ(css, cgroup, kn);
	if (!kn)
		return 0;
	if (bpf_core_type_exists(union kernfs_node_id___old))
		return BPF_CORE_READ((struct kernfs_node___old *)kn, id.ino);
	return BPF_CORE_READ(kn, id);
}

static __always_inline struct mw_oom_event *reserve_oom(void)
{
	struct mw_oom_event *e = bpf_ringbuf_reserve(&life_events, sizeof(*e), 0);

	if (!e) {
		count(MW_CNT_LIFE_DROPPED);
		return NULL;
	}
	__builtin_memset(e, 0, sizeof(*e));
	fill_header(&e->hdr, MW_EV_OOM, 0, 0, bpf_ktime_get_boot_ns());
	return e;
}

SEC("raw_tp/mark_victim")
int handle_oom(struct bpf_raw_tracepoint_args *ctx)
{
	struct mw_oom_event *e;
	struct task_struct *task;
	struct mm_struct *mm;

	count(MW_CNT_OOM);
	if (bpf_core_field_exists(struct trace_event_raw_mark_victim, uid)) {
		/* CO-RE: since 6.8 ("mm: update mark_victim tracepoints fields") the tracepoint is
		 * mark_victim(struct task_struct *task, uid_t uid); its event gained a uid field then,
		 * which is how the running kernel's BTF tells the two apart */
		__u32 tgid, tid;

		task = (struct task_struct *)ctx->args[0];
		if (!visible_ids(task, &tgid, &tid))
			return 0;
		e = reserve_oom();
		if (!e)
			return 0;
		e->uid = (__u32)ctx->args[1];
		e->hdr.tgid = tgid;
		e->hdr.tid = tid;
		e->start_boottime_ns = BPF_CORE_READ(task, group_leader, start_boottime);
		e->oom_score_adj = BPF_CORE_READ(task, signal, oom_score_adj);
		e->cgroup_id = memcg_id(task);
		BPF_CORE_READ_STR_INTO(&e->comm, task, group_leader, comm);
		mm = BPF_CORE_READ(task, mm);
		if (mm) {
			e->total_vm_pages = BPF_CORE_READ(mm, total_vm);
			e->file_rss_pages = rss_pages(mm, MM_FILEPAGES);
			e->anon_rss_pages = rss_pages(mm, MM_ANONPAGES);
			e->shmem_rss_pages = rss_pages(mm, MM_SHMEMPAGES);
		}
	} else {
		/* older kernels: mark_victim(int pid), a pid of the initial namespace; no task to read
		 * the cgroup from (cgroup_id 0: user space uses the victim's last known cgroup) */
		if (cfg.pidns_ino)
			return 0;   /* no task to translate it with */
		e = reserve_oom();
		if (!e)
			return 0;
		e->hdr.tgid = (__u32)ctx->args[0];
		e->hdr.tid = e->hdr.tgid;
	}
	count(MW_CNT_EVENTS);
	bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
	return 0;
}
#include "iter.bpf.c"
