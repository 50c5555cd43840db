/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * memwatch: the one truth of every layout shared between the eBPF program and Python.
 *
 * Python mirrors these structures with ctypes (src/memwatch/ebpf/layouts.py) and checks, at every
 * load and in the tests, that sizes and member offsets agree with the BTF inside prog.bpf.o.
 * Change a layout here and the Python side fails loudly until it is changed too.
 */
#ifndef MEMWATCH_H
#define MEMWATCH_H

#define MW_COMM_LEN 16
#define MW_LIVE_SLOTS 8
#define MW_STACK_BYTES 16384   /* user stack copied with each call of a stack target (perf's dwarf mode: 8192) */
#define MW_STACK_REGS 17       /* user registers at the call, in DWARF numbering (x86-64: 0-15, 16 = rip) */
#define MW_STACK_PAGE 4096     /* the stack is copied a page at a time */

/* A live slot (mw_proc_stats.live) packs a page-aligned mapping into one word: its start page in
 * the low MW_SLOT_LEN_SHIFT bits, its length in pages above them; 0 is a free slot. A mapping
 * that does not fit (start at or above 2^57, length 2^31 or more) goes to active_allocs. */
#define MW_SLOT_PAGE_SHIFT 12
#define MW_SLOT_LEN_SHIFT 45
#define MW_SLOT_START_LIMIT (1ULL << (MW_SLOT_LEN_SHIFT + MW_SLOT_PAGE_SHIFT))
#define MW_SLOT_LEN_LIMIT (1ULL << (64 - MW_SLOT_LEN_SHIFT + MW_SLOT_PAGE_SHIFT))

#define MW_MAX_SPAN 8          /* tracked mappings one munmap may resolve, beyond which it is "untracked" */
#define MW_RATE_WINDOW_NS 1000000000ULL   /* the rate limiters' window: one second */

/* Kernel values the program tests. vmlinux.h carries the kernel's types and enums but not its
 * macros, so these are spelt out here, each with where the kernel defines it. */
#define MAX_ERRNO 4095                 /* include/linux/err.h: returns in [-4095, -1] are errors */
#define MAP_FIXED 0x10                 /* uapi/asm-generic/mman-common.h */
#define MREMAP_DONTUNMAP 4             /* uapi/linux/mman.h, since 5.7 */
#define SIGNAL_GROUP_EXIT 0x00000004   /* include/linux/sched/signal.h: signal_struct.flags */
#define TS_COMPAT 0x0002               /* arch/x86/include/asm/thread_info.h: in a 32-bit syscall */
#define MW_MAX_PIDNS_LEVEL 32          /* include/linux/pid_namespace.h: MAX_PID_NS_LEVEL */
#define MW_PID_MAX_LIMIT (1 << 22)     /* include/linux/threads.h: PID_MAX_LIMIT on 64-bit machines */

/* Kinds of ring-buffer records; every record starts with struct mw_event_header. */
enum mw_event_kind {
	MW_EV_MMAP = 1,
	MW_EV_MUNMAP = 2,
	MW_EV_BRK = 3,
	MW_EV_MREMAP = 4,
	MW_EV_EXIT = 5,
	MW_EV_OOM = 6,
	MW_EV_STACK = 7,        /* stack_events: a call of a stack target with its user stack (mw_stack_event) */
	MW_EV_STACK_CALL = 8,   /* stack_events: such a call without its stack (rate limit, full ring) */
	MW_EV_STACK_EXEC = 9,   /* stack_events: a stack target exec'd: its address space starts again */
};

/* Indexes into struct mw_counters: losses and work nobody would otherwise see. */
enum mw_counter {
	MW_CNT_EVENTS = 0,         /* records submitted to the ring buffer */
	MW_CNT_DROPPED = 1,        /* bpf_ringbuf_reserve failed: ring full */
	MW_CNT_THROTTLED = 2,      /* call events withheld by the per-process rate limit */
	MW_CNT_STATS_FULL = 3,     /* no memory for a process's counters */
	MW_CNT_ALLOCS_FULL = 4,    /* active_allocs insert failed: map full */
	MW_CNT_BRK_UNSEEN = 5,     /* brk calls of a process whose break was not known yet: not counted */
	MW_CNT_STALE_ALLOCS = 6,   /* live-mapping entries found belonging to an old mm (exec, pid reuse) */
	MW_CNT_WAKEUPS = 7,        /* forced consumer wakeups */
	MW_CNT_EXITS = 8,          /* process (thread-group) exits seen */
	MW_CNT_OOM = 9,            /* OOM victims seen */
	MW_CNT_ALLOCS_QUOTA = 10,  /* mappings not followed: their process held its quota of active_allocs */
	MW_CNT_PAUSED = 11,        /* call events withheld while memwatch's consumer was over its budget */
	MW_CNT_LIFE_DROPPED = 12,  /* exit or OOM events lost: life_events ring full */
	MW_CNT_LIFE_WAKEUPS = 13,  /* forced consumer wakeups for life_events */
	MW_CNT_MAX = 16,
};

/* Set from Python before load (.rodata); the verifier then prunes what is switched off. */
struct mw_config {
	__u64 event_threshold;   /* bytes: smaller calls are counted but not streamed */
	__u64 page_size;
	__u64 wakeup_bytes;      /* force a consumer wakeup once this much data waits in the ring */
	__u32 events_per_sec;    /* per-process call-event budget per second; 0 = unlimited */
	__u32 pidns_ino;         /* pid namespace of memwatch's /proc; 0: the initial one (no translation) */
	__u32 map_quota;         /* active_allocs entries one process may hold */
	__u32 stacks_per_sec;    /* per-process budget of captured stacks per second; 0 = unlimited */
};

struct mw_counters {
	__u64 c[MW_CNT_MAX];
};

/* Per process (thread group) since the tracer attached, in task-local storage of the group
 * leader: found from any thread with a few loads, where a hash-map lookup by tgid cost ~70 ns a
 * call. Only successful calls count. */
struct mw_proc_stats {
	__u64 start_boottime_ns;   /* group leader's start: with the tgid, the process identity */
	__u64 first_seen_ns;       /* CLOCK_BOOTTIME */
	__u64 last_seen_ns;        /* exact to a jiffy */
	__u64 last_seen_jiffies;
	__u64 mmap_count;
	__u64 mmap_bytes;          /* page-rounded lengths */
	__u64 munmap_count;
	__u64 munmap_bytes;
	__u64 brk_count;           /* brk calls that moved the break */
	__u64 brk_grow_bytes;
	__u64 brk_shrink_bytes;
	__u64 mremap_count;
	__u64 mremap_grow_bytes;
	__u64 mremap_shrink_bytes;
	__s64 outstanding_bytes;   /* mapped by traced mmaps/mremaps, not yet unmapped */
	__u64 outstanding_peak;
	__u64 untracked_unmap_bytes; /* unmapped bytes no traced mapping accounted for */
	__u64 lost_mappings;       /* traced mappings memwatch could not follow (map full or quota): */
	__u64 lost_bytes;          /* their bytes left outstanding_bytes, which is then a lower bound */
	__u64 map_entries;         /* this process's entries in active_allocs (for its quota) */
	__u64 failed_calls;
	__u64 events_sent;
	__u64 events_throttled;
	__u64 rl_window_ns;        /* rate limiter: start of the current one-second window */
	__u64 rl_count;            /* call events sent in that window */
	/* The process's MW_LIVE_SLOTS most recent live mappings live here, not in active_allocs, so
	 * the common map-then-unmap pattern costs no hash-map operation; a new mapping pushes the
	 * oldest one out into active_allocs. A slot packs a mapping as MW_SLOT_* says and is changed
	 * only with atomic exchanges. */
	__u64 live[MW_LIVE_SLOTS];
	__u64 live_next;           /* the slot the next mapping takes */
	__u64 brk_last;            /* the break after the last brk (seeded at fork, exec, attach); 0: unknown */
	__u32 ns_tgid;             /* the tgid in memwatch's pid namespace; 0: none, the process is not traced */
	__u32 stacks;              /* 1: a stack target (stack_targets); its calls carry their user stack */
	__u32 called;              /* 1: its bit in called_tgids is set (see there) */
	__u32 _pad;
	char comm[MW_COMM_LEN];    /* group leader's name */
};

/* Pids in events are those of memwatch's pid namespace (see mw_config.pidns_ino); processes that
 * have none there send no events. */
struct mw_event_header {
	__u32 kind;                /* enum mw_event_kind */
	__u32 tgid;
	__u32 tid;
	__u32 _pad;
	__u64 ts_ns;               /* CLOCK_BOOTTIME */
};

/* MW_EV_MMAP / MUNMAP / BRK / MREMAP.
 * mmap: addr = result, len; munmap: addr, len; brk: addr = old break, new_addr = new break;
 * mremap: addr/len = old, new_addr/new_len = new. Lengths are page-rounded, brk is exact. */
struct mw_call_event {
	struct mw_event_header hdr;
	__u64 addr;
	__u64 len;
	__u64 new_addr;
	__u64 new_len;
	__u32 flags;
	__u32 prot;
	char comm[MW_COMM_LEN];
};

/* MW_EV_EXIT: a whole thread group died; final counters travel with it. */
struct mw_exit_event {
	struct mw_event_header hdr;
	__u64 start_boottime_ns;
	__s32 exit_status;         /* wait(2)-style status: code << 8, or the killing signal */
	__u32 has_stats;           /* 0: the process made no traced call while attached */
	__u64 maxrss_pages;        /* peak RSS over the life of the process */
	char comm[MW_COMM_LEN];
	struct mw_proc_stats stats;
};

/* MW_EV_OOM: the OOM killer chose a victim. */
struct mw_oom_event {
	struct mw_event_header hdr;
	__u64 start_boottime_ns;
	__u64 total_vm_pages;
	__u64 anon_rss_pages;
	__u64 file_rss_pages;
	__u64 shmem_rss_pages;
	__u32 uid;
	__s32 oom_score_adj;
	char comm[MW_COMM_LEN];
	__u64 cgroup_id;           /* the victim's memory cgroup: its kernfs id, which is its directory's
	                            * inode number; 0 when the kernel gave no task (before 6.8) or has no
	                            * memory controller */
};

struct mw_alloc_key {
	__u32 tgid;
	__u32 _pad;
	__u64 addr;
};

/* active_allocs value: a live mapping made by a traced call. */
struct mw_alloc {
	__u64 len;
	__u64 mm;                  /* owning mm_struct: entries of an older mm are stale */
};

/* stack_events records. Only the processes memwatch was asked to look at (stack_targets) send
 * them: every mmap, munmap, brk and mremap they make that succeeds, so that user space can follow
 * their address ranges exactly, each with the user stack of the call unless the process is over
 * its budget (cfg.stacks_per_sec) or the ring is full. The call fields are those of
 * mw_call_event; MW_EV_STACK_EXEC has none. */
struct mw_stack_call {
	struct mw_event_header hdr;
	__u32 call;                /* MW_EV_MMAP ... MW_EV_MREMAP; 0 for MW_EV_STACK_EXEC */
	__u32 flags;
	__u64 addr;
	__u64 len;
	__u64 new_addr;
	__u64 new_len;
};

/* MW_EV_STACK: the call, the user registers saved at the system call, and the user stack from
 * the start of the stack pointer's page up: what user space unwinds with each module's .eh_frame
 * (no frame pointers needed). The stack pointer is stack_skip bytes into stack; stack_len bytes
 * were read, fewer than MW_STACK_BYTES where the stack's mapping (or what was ever touched of it)
 * ends sooner. */
struct mw_stack_event {
	struct mw_stack_call c;
	__u64 regs[MW_STACK_REGS];
	__u32 stack_len;
	__u32 stack_skip;
	__u8 stack[MW_STACK_BYTES];
};

/* stack_targets value, keyed by the tgid memwatch shows. Written by user space with
 * start_boottime_ns 0 ("the process that has this pid now"); mark_stacks fills it in, and the
 * handlers then ignore a later process that reuses the pid. */
struct mw_stack_target {
	__u64 start_boottime_ns;
	__u64 rl_window_ns;        /* rate limiter: start of the current one-second window */
	__u64 rl_count;            /* stacks captured in that window */
	__u64 captured;            /* MW_EV_STACK records sent */
	__u64 throttled;           /* calls sent without their stack: over stacks_per_sec */
	__u64 dropped;             /* records lost: stack_events full */
};

/*
 * What the dump_tasks iterator writes: one pass over every task gives both the process table and
 * the kernel counters. For each process (thread group) of memwatch's pid namespace, a struct
 * mw_task_record with every figure the process table needs, so one read() replaces a tick of
 * /proc/PID/stat, status and statm reads; and right after it, for a process that made a traced
 * call since memwatch attached, a struct mw_task_counts. Both are MW_TASK_UNIT bytes long, so user
 * space splits a read into units of one size; a counts unit has MW_COUNTS_TAG where a record has
 * its tgid. Pages are the kernel's page size; times are nanoseconds.
 */
#define MW_RSS_FILE 0    /* rss[] indexes: the kernel's MM_FILEPAGES ... MM_SHMEMPAGES order */
#define MW_RSS_ANON 1
#define MW_RSS_SWAP 2    /* swap entries, not resident: VmSwap */
#define MW_RSS_SHMEM 3
#define MW_RSS_COUNTERS 4
#define MW_TASK_UNIT 168
#define MW_COUNTS_TAG 0xffffffffU   /* never a pid: PID_MAX_LIMIT is 2^22 */
struct mw_task_record {
	__u32 tgid;                /* in memwatch's pid namespace (tasks without one are left out) */
	__u32 ppid;                /* likewise; 0 when the parent has none there */
	__u32 uid;                 /* real uid */
	__u32 threads;
	__u64 start_boottime_ns;   /* group leader's start: with the tgid, the process identity */
	__u64 exec_id;             /* moves at every exec: the command line is read again */
	__u64 memcg_id;            /* memory cgroup (see memcg_id() in prog.bpf.c); 0: none */
	__u64 total_vm;            /* pages: VmSize */
	__u64 hiwater_vm;          /* pages: VmPeak is the larger of it and total_vm */
	__u64 hiwater_rss;         /* pages: VmHWM before it is raised to the current RSS */
	__u64 rss[MW_RSS_COUNTERS]; /* pages, each summed exactly over the per-CPU counters */
	__u64 runtime_ns;          /* CPU time of the whole group, exited threads included */
	__u64 utime_ns;            /* its split by tick sampling, as /proc scales it */
	__u64 stime_ns;
	__u32 flags;               /* task->flags of the leader (PF_KTHREAD) */
	__u32 state;               /* the leader's state letter, as /proc/PID/stat shows it */
	char comm[MW_COMM_LEN];    /* group leader's name */
	__u64 _unit[3];            /* zero: a record is as long as a counts unit */
};

/* The counters of the process whose record precedes it (its tgid, start and name are there):
 * the figures of struct mw_proc_stats that user space shows. */
struct mw_task_counts {
	__u32 tag;                 /* MW_COUNTS_TAG */
	__u32 host_tgid;           /* in the initial pid namespace, as active_allocs keys it */
	__u64 first_seen_ns;
	__u64 last_seen_ns;
	__u64 mmap_count;
	__u64 mmap_bytes;
	__u64 munmap_count;
	__u64 munmap_bytes;
	__u64 brk_count;
	__u64 brk_grow_bytes;
	__u64 brk_shrink_bytes;
	__u64 mremap_count;
	__u64 mremap_grow_bytes;
	__u64 mremap_shrink_bytes;
	__s64 outstanding_bytes;
	__u64 outstanding_peak;
	__u64 untracked_unmap_bytes;
	__u64 lost_mappings;
	__u64 lost_bytes;
	__u64 failed_calls;
	__u64 events_sent;
	__u64 events_throttled;
};

_Static_assert(sizeof(struct mw_task_record) == MW_TASK_UNIT, "a task record is one unit");
_Static_assert(sizeof(struct mw_task_counts) == MW_TASK_UNIT, "a counts unit is one unit");

#endif /* MEMWATCH_H */
