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

/* Kinds of ring-buffer records; every record starts with struct mw_event_header. */
enum mw_event_kind {
	MW_EV_MMAP = 1,
	MW_EV_MUNMAP = 2,
	MW_EV_BRK = 3,
	MW_EV_MREMAP = 4,
	MW_EV_EXIT = 5,
	MW_EV_OOM = 6,
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
	__u32 _pad;
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
	 * oldest one out into active_allocs. A slot packs start >> 12 | (length >> 12) << 45 and is
	 * changed only with atomic exchanges; 0 is a free slot. */
	__u64 live[MW_LIVE_SLOTS];
	__u64 live_next;           /* the slot the next mapping takes */
	__u64 brk_last;            /* the break after the last brk (seeded at fork, exec, attach); 0: unknown */
	__u32 ns_tgid;             /* the tgid in memwatch's pid namespace; 0: none, the process is not traced */
	__u32 _pad;
	char comm[MW_COMM_LEN];    /* group leader's name */
};

/* What the dump_stats iterator writes for each process: Python reads all of them in one go. */
struct mw_stats_record {
	__u32 tgid;                /* in memwatch's pid namespace; 0: the process has no pid there */
	__u32 host_tgid;           /* in the initial namespace, as active_allocs keys it */
	struct mw_proc_stats stats;
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

#endif /* MEMWATCH_H */
