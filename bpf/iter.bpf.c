// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * memwatch's process table and kernel counters in one read: the dump_tasks iterator writes one
 * struct mw_task_record per thread group of memwatch's pid namespace, with every figure the table
 * needs (RSS by type summed exactly over the per-CPU counters, VIRT, peaks, swap, threads, state,
 * parent, uid, start, name, CPU time, memory cgroup), followed by a struct mw_task_counts for a
 * process that made a traced call. User space reads it with one read() loop per tick instead of
 * opening /proc/PID/stat, status and statm of every process, and instead of a second pass over
 * every task for the counters (which cost 0.4-0.7 us a task of iteration alone).
 *
 * Included by prog.bpf.c (at its end): it uses that file's config (cfg), ns_pid(), memory_subsys() and
 * the kernfs node layouts.
 */

/* Kernel constants /proc uses to show a task (include/linux/sched.h); stable since 4.14. */
#define MW_PF_KTHREAD 0x00200000
#define MW_TASK_REPORT 0x7f         /* TASK_INTERRUPTIBLE ... TASK_PARKED, EXIT_DEAD, EXIT_ZOMBIE */
#define MW_TASK_IDLE 0x402          /* TASK_UNINTERRUPTIBLE | TASK_NOLOAD */
#define MW_TASK_REPORT_IDLE 0x80
#define MW_TASK_RTLOCK_WAIT 0x1000
#define MW_TASK_UNINTERRUPTIBLE 0x2
#define MW_STATE_LETTERS 0x505a587474445352ULL   /* "RSDTtXZP", first letter in the low byte */
#define MW_MAX_CPUS 8192            /* the kernel's largest NR_CPUS */

/*
 * Where each CPU's copy of a per-CPU counter lies. The counters' pointers carry no BTF percpu tag
 * that bpf_per_cpu_ptr() would take, and kernels without CONFIG_KALLSYMS_ALL (this one) resolve
 * no per-CPU variable as a ksym; but a per-CPU array map knows both sides: its struct bpf_array
 * holds the value's per-CPU pointer (pptrs[0]), and bpf_map_lookup_percpu_elem() (5.19+) returns
 * where that value lies on a given CPU, NULL past the last possible one. Their difference is the
 * CPU's per-CPU offset, the same for every per-CPU pointer and for as long as the machine runs:
 * find_cpus notes each CPU's in cpu_offsets once, when memwatch attaches, and dump_tasks reads
 * them from there.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} cpu_anchor SEC(".maps");

struct mw_cpus {
	__u32 n;                           /* possible CPUs; 0: find_cpus has not run */
	__u32 _pad;
	__u64 offset[MW_MAX_CPUS];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mw_cpus);
} cpu_offsets SEC(".maps");

/* A pointer's value as a plain number: the verifier forbids most arithmetic on map pointers. */
static __always_inline __u64 address_of(const void *p)
{
	__u64 a = 0;

	bpf_probe_read_kernel(&a, sizeof(a), &p);
	return a;
}

struct mw_find_cpus {
	struct mw_cpus *cpus;
	__u64 anchor;                      /* cpu_anchor's value as a per-CPU pointer */
};

static long note_cpu(__u32 cpu, struct mw_find_cpus *f)
{
	__u32 zero = 0;
	const void *here = bpf_map_lookup_percpu_elem(&cpu_anchor, &zero, cpu);
	struct mw_cpus *cpus = bpf_map_lookup_elem(&cpu_offsets, &zero);

	if (!here || !cpus || cpu >= MW_MAX_CPUS)
		return 1;   /* past the last possible CPU */
	cpus->offset[cpu] = address_of(here) - f->anchor;
	cpus->n = cpu + 1;
	return 0;
}

/* Run once at attach, before any dump_tasks pass (its first call does it all). */
SEC("iter/task")
int find_cpus(struct bpf_iter__task *ctx)
{
	__u32 zero = 0;
	struct mw_cpus *cpus = bpf_map_lookup_elem(&cpu_offsets, &zero);
	struct mw_find_cpus f = {};

	if (!cpus || cpus->n)
		return 0;
	if (bpf_probe_read_kernel(&f.anchor, sizeof(f.anchor), (void *)(address_of(&cpu_anchor) +
				  bpf_core_field_offset(struct bpf_array, pptrs))))
		return 0;
	bpf_loop(MW_MAX_CPUS, note_cpu, &f, 0);
	return 0;
}

/* Open-coded task iterator (6.7+): the threads of one process, for its CPU time. Weak: on older
 * kernels they resolve to 0 and the group's CPU time is its leader's plus its exited threads'. */
extern int bpf_iter_task_new(struct bpf_iter_task *it, struct task_struct *task, unsigned int flags) __weak __ksym;
extern struct task_struct *bpf_iter_task_next(struct bpf_iter_task *it) __weak __ksym;
extern void bpf_iter_task_destroy(struct bpf_iter_task *it) __weak __ksym;

/* Before 5.14 a task's state was `volatile long state`, since then `unsigned int __state`. */
struct task_struct___pre514 {
	long state;
} __attribute__((preserve_access_index));

struct mw_rss_sum {
	__u64 counters[MW_RSS_COUNTERS];   /* each counter's per-CPU pointer */
	__s64 sum[MW_RSS_COUNTERS];
	bool packed;                       /* the four lie side by side (percpu_counter_init_many, 6.6+) */
};

/* One CPU's deltas: one read for the four counters where they lie side by side. (A loop of its
 * own for the first 64 CPUs, without bpf_loop's callback, measured no faster.) */
static long add_cpu_deltas(__u32 cpu, struct mw_rss_sum *s)
{
	__s32 d[MW_RSS_COUNTERS] = {};
	__u32 zero = 0;
	struct mw_cpus *cpus = bpf_map_lookup_elem(&cpu_offsets, &zero);
	__u64 offset;

	if (!cpus || cpu >= MW_MAX_CPUS)
		return 1;
	offset = cpus->offset[cpu];
	if (s->packed) {
		bpf_probe_read_kernel(d, sizeof(d), (void *)(s->counters[0] + offset));
	} else {
		for (int i = 0; i < MW_RSS_COUNTERS; i++)
			if (s->counters[i])
				bpf_probe_read_kernel(&d[i], sizeof(d[i]), (void *)(s->counters[i] + offset));
	}
	for (int i = 0; i < MW_RSS_COUNTERS; i++)
		s->sum[i] += d[i];
	return 0;
}

/*
 * RSS counters in pages. Since 6.2 (mm: convert mm's rss stats into percpu_counter) each is a
 * percpu_counter whose count lags the truth by up to 32 pages per CPU: the exact value adds every
 * CPU's delta, as get_mm_counter_sum() does for /proc/PID/status (VmRSS, since 6.16; statm).
 * Offline CPUs' deltas are folded into count when they go, so every possible CPU may be added.
 */
static __always_inline void read_rss(struct mm_struct *mm, __u64 *out)
{
	struct mw_rss_sum s = {};
	struct mw_cpus *cpus;
	__u32 zero = 0;

	/* before 6.2 mm->rss_stat was one atomic per counter (prog.bpf.c's mm_struct___old), exactly
	 * what /proc shows (the per-thread caches of SPLIT_RSS_COUNTING are not in its figure either) */
	if (bpf_core_type_exists(struct mm_rss_stat___old)) {
		struct mm_struct___old *old = (void *)mm;

		for (int i = 0; i < MW_RSS_COUNTERS; i++) {
			long v = old->rss_stat.count[i].counter;

			out[i] = v > 0 ? v : 0;
		}
		return;
	}
	cpus = bpf_map_lookup_elem(&cpu_offsets, &zero);
	if (!cpus)
		return;
	for (int i = 0; i < MW_RSS_COUNTERS; i++) {
		s.sum[i] = mm->rss_stat[i].count;
		s.counters[i] = (__u64)mm->rss_stat[i].counters;
	}
	s.packed = s.counters[0] && s.counters[1] == s.counters[0] + sizeof(__s32) &&
		   s.counters[2] == s.counters[0] + 2 * sizeof(__s32) &&
		   s.counters[3] == s.counters[0] + 3 * sizeof(__s32);
	bpf_loop(cpus->n, add_cpu_deltas, &s, 0);
	for (int i = 0; i < MW_RSS_COUNTERS; i++)
		out[i] = s.sum[i] > 0 ? s.sum[i] : 0;
}

/* The state letter of /proc/PID/stat (task_state_index() and its table in fs/proc/array.c). */
static __always_inline __u32 state_letter(struct task_struct *task)
{
	unsigned int raw, state, index = 0;

	if (bpf_core_field_exists(task->__state))
		raw = task->__state;
	else
		raw = ((struct task_struct___pre514 *)task)->state;
	state = (raw | task->exit_state) & MW_TASK_REPORT;
	if ((raw & MW_TASK_IDLE) == MW_TASK_IDLE)
		state = MW_TASK_REPORT_IDLE;
	if (raw == MW_TASK_RTLOCK_WAIT)
		state = MW_TASK_UNINTERRUPTIBLE;
	while (state && index < 8) {   /* fls() */
		state >>= 1;
		index++;
	}
	/* "RSDTtXZPI"[index], without a table: a static one would go to .rodata, before cfg */
	return index < 8 ? (MW_STATE_LETTERS >> (index * 8)) & 0xff : 'I';
}

/* memcg_id() (prog.bpf.c) with plain loads, which an iterator's task allows: its five probe reads
 * cost 0.17 us a process, a sixth of a pass. */
static __always_inline __u64 task_memcg_id(struct task_struct *task)
{
	struct cgroup_subsys_state *css;
	struct kernfs_node *kn;
	struct css_set *cset;
	int memory = memory_subsys();

	if (memory < 0)
		return 0;
	cset = task->cgroups;
	css = cset ? cset->subsys[memory] : NULL;
	kn = css && css->cgroup ? css->cgroup->kn : NULL;
	if (!kn)
		return 0;
	if (bpf_core_type_exists(union kernfs_node_id___old))
		return BPF_CORE_READ((struct kernfs_node___old *)kn, id.ino);
	return kn->id;
}

/* CPU time of the group: its exited threads' (in signal_struct) plus each live thread's. A group
 * of one thread is its leader alone (a leader that exited before its threads still counts in
 * nr_threads until the group is reaped), and needs no walk. */
static __always_inline void read_cpu(struct task_struct *task, struct mw_task_record *r)
{
	struct signal_struct *sig = task->signal;
	struct bpf_iter_task it;
	struct task_struct *t;

	r->runtime_ns = sig->sum_sched_runtime;
	r->utime_ns = sig->utime;
	r->stime_ns = sig->stime;
	if (r->threads == 1 || !bpf_iter_task_new || !bpf_iter_task_next || !bpf_iter_task_destroy) {
		r->runtime_ns += task->se.sum_exec_runtime;
		r->utime_ns += task->utime;
		r->stime_ns += task->stime;
		return;
	}
	bpf_iter_task_new(&it, task, BPF_TASK_ITER_PROC_THREADS);
	while ((t = bpf_iter_task_next(&it))) {
		r->runtime_ns += t->se.sum_exec_runtime;
		r->utime_ns += t->utime;
		r->stime_ns += t->stime;
	}
	bpf_iter_task_destroy(&it);
}

/* The counters user space shows, of a process that made a traced call. */
static __always_inline void fill_counts(struct mw_task_counts *c, struct task_struct *task, struct mw_proc_stats *st)
{
	c->tag = MW_COUNTS_TAG;
	c->host_tgid = task->tgid;   /* active_allocs is keyed by it: the sweep needs it */
	c->first_seen_ns = st->first_seen_ns;
	c->last_seen_ns = st->last_seen_ns;
	c->mmap_count = st->mmap_count;
	c->mmap_bytes = st->mmap_bytes;
	c->munmap_count = st->munmap_count;
	c->munmap_bytes = st->munmap_bytes;
	c->brk_count = st->brk_count;
	c->brk_grow_bytes = st->brk_grow_bytes;
	c->brk_shrink_bytes = st->brk_shrink_bytes;
	c->mremap_count = st->mremap_count;
	c->mremap_grow_bytes = st->mremap_grow_bytes;
	c->mremap_shrink_bytes = st->mremap_shrink_bytes;
	c->outstanding_bytes = st->outstanding_bytes;
	c->outstanding_peak = st->outstanding_peak;
	c->untracked_unmap_bytes = st->untracked_unmap_bytes;
	c->lost_mappings = st->lost_mappings;
	c->lost_bytes = st->lost_bytes;
	c->failed_calls = st->failed_calls;
	c->events_sent = st->events_sent;
	c->events_throttled = st->events_throttled;
}

/* One record per process of memwatch's pid namespace, kernel threads included (no mm: no memory
 * figures), in the order of their pids; each followed by its counters if it made a traced call
 * (seeded at fork, exec or attach but no call since: nothing to report). */
SEC("iter/task")
int dump_tasks(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	union {
		struct mw_task_record r;
		struct mw_task_counts c;
	} u = {};   /* one after the other in the same stack */
	struct mw_task_record *r = &u.r;
	struct task_struct *parent;
	struct mw_proc_stats *st;
	struct mm_struct *mm;
	__u32 host;
	__u64 *w;

	if (!task || task->pid != task->tgid)
		return 0;   /* thread group leaders only */
	if (cfg.pidns_ino) {
		r->tgid = ns_pid(task->thread_pid);
		if (!r->tgid)
			return 0;   /* not in memwatch's namespace: not its to show */
	} else {
		r->tgid = task->tgid;
	}
	parent = task->real_parent;
	if (parent && task->thread_pid)   /* /proc: 0 once the task is no longer alive */
		r->ppid = cfg.pidns_ino ? ns_pid(parent->group_leader->thread_pid) : parent->tgid;
	r->uid = task->cred->uid.val;
	r->threads = task->signal->nr_threads;
	r->start_boottime_ns = task->start_boottime;
	r->exec_id = task->self_exec_id;
	r->memcg_id = task_memcg_id(task);
	r->flags = task->flags;
	r->state = state_letter(task);
	BPF_CORE_READ_STR_INTO(&r->comm, task, comm);
	mm = task->mm;
	if (mm && !(r->flags & MW_PF_KTHREAD)) {
		r->total_vm = mm->total_vm;
		r->hiwater_vm = mm->hiwater_vm;
		r->hiwater_rss = mm->hiwater_rss;
		read_rss(mm, r->rss);
	}
	read_cpu(task, r);
	bpf_seq_write(ctx->meta->seq, r, sizeof(*r));
	host = task->tgid;
	w = called_word(host);
	if (!w || !(*w & (1ULL << (host % 64))))
		return 0;   /* no traced call: no counters to look up */
	st = bpf_task_storage_get(&proc_stats, task, 0, 0);
	if (st && active(st)) {
		fill_counts(&u.c, task, st);
		bpf_seq_write(ctx->meta->seq, &u.c, sizeof(u.c));
	}
	return 0;
}

struct mw_task_record _mw_task_record = {};
struct mw_task_counts _mw_task_counts = {};
