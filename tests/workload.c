/*
 * A process whose memory system calls are exactly known: the tests drive it line by line on stdin
 * and compare the tracer's counts with what they asked for. It never calls malloc or stdio (both
 * may mmap or brk behind our back); threads run on static stacks so creating them maps nothing.
 *
 * Commands (one per line; every reply is one line, a number or "ok"):
 *   mmap LEN [FIXED_ADDR]        anonymous private mapping; prints the address or -errno
 *   munmap ADDR LEN              prints 0 or -errno
 *   brk ADDR                     raw brk; prints the returned break
 *   mremap OLD OLDLEN NEWLEN FLAGS [NEWADDR]   prints the new address or -errno
 *   badmmap                      an mmap that fails (no MAP_PRIVATE/MAP_SHARED): -EINVAL
 *   threads N ITERS LEN          N threads, each ITERS x (mmap LEN + munmap LEN); prints "ok"
 *   fork ITERS LEN STATUS        a child maps ITERS x LEN and exits with STATUS; prints its pid
 *   forkbrk LEN STATUS           a child grows the break it inherited by LEN (its first call) and
 *                                exits with STATUS; prints its pid
 *   pid                          prints the pid
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_THREADS 8
#define STACK_SIZE (64 * 1024)

static char stacks[MAX_THREADS][STACK_SIZE] __attribute__((aligned(16)));
static volatile pid_t tids[MAX_THREADS];
static unsigned long thread_iters, thread_len;

static long sys_mmap(unsigned long addr, unsigned long len, int flags)
{
	return syscall(SYS_mmap, addr, len, PROT_READ | PROT_WRITE, flags, -1, 0);
}

static long ret_or_errno(long r)
{
	return r == -1 ? -(long)errno : r;
}

static void put(long v)
{
	char buf[32];
	int i = sizeof(buf) - 1, neg = v < 0;
	unsigned long u = neg ? -(unsigned long)v : (unsigned long)v;

	buf[i--] = '\n';
	do {
		buf[i--] = '0' + u % 10;
		u /= 10;
	} while (u);
	if (neg)
		buf[i--] = '-';
	(void)!write(1, buf + i + 1, sizeof(buf) - 1 - i);
}

static int thread_main(void *arg)
{
	(void)arg;
	for (unsigned long i = 0; i < thread_iters; i++) {
		long a = sys_mmap(0, thread_len, MAP_PRIVATE | MAP_ANONYMOUS);

		if (a != -1)
			syscall(SYS_munmap, a, thread_len);
	}
	return 0;
}

static void run_threads(int n)
{
	int flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM |
		    CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID;

	if (n > MAX_THREADS)
		n = MAX_THREADS;
	for (int i = 0; i < n; i++)
		clone(thread_main, stacks[i] + STACK_SIZE, flags, NULL, &tids[i], NULL, &tids[i]);
	for (int i = 0; i < n; i++)
		while (tids[i] != 0)
			syscall(SYS_futex, &tids[i], FUTEX_WAIT, tids[i], NULL, NULL, 0);
}

static int read_line(char *buf, int size)
{
	int n = 0;

	while (n < size - 1) {
		char c;

		if (read(0, &c, 1) != 1)
			return -1;
		if (c == '\n')
			break;
		buf[n++] = c;
	}
	buf[n] = 0;
	return n;
}

static unsigned long arg(char **p)
{
	while (**p == ' ')
		(*p)++;
	return strtoul(*p, p, 0);
}

int main(void)
{
	char line[256];

	while (read_line(line, sizeof(line)) >= 0) {
		char *p = line;

		if (!strncmp(p, "mmap ", 5)) {
			p += 5;
			unsigned long len = arg(&p), fixed = arg(&p);
			long r = sys_mmap(fixed, len, MAP_PRIVATE | MAP_ANONYMOUS | (fixed ? MAP_FIXED : 0));

			put(ret_or_errno(r));
		} else if (!strncmp(p, "munmap ", 7)) {
			p += 7;
			unsigned long a = arg(&p), len = arg(&p);

			put(ret_or_errno(syscall(SYS_munmap, a, len)));
		} else if (!strncmp(p, "brk ", 4)) {
			p += 4;
			put(syscall(SYS_brk, arg(&p)));
		} else if (!strncmp(p, "mremap ", 7)) {
			p += 7;
			unsigned long o = arg(&p), ol = arg(&p), nl = arg(&p), fl = arg(&p), na = arg(&p);

			put(ret_or_errno(syscall(SYS_mremap, o, ol, nl, fl, na)));
		} else if (!strcmp(p, "badmmap")) {
			put(ret_or_errno(syscall(SYS_mmap, 0, 4096, PROT_READ, MAP_ANONYMOUS, -1, 0)));
		} else if (!strncmp(p, "threads ", 8)) {
			p += 8;
			int n = arg(&p);

			thread_iters = arg(&p);
			thread_len = arg(&p);
			run_threads(n);
			put(0);
		} else if (!strncmp(p, "fork ", 5)) {
			p += 5;
			unsigned long iters = arg(&p), len = arg(&p), status = arg(&p);
			pid_t child = fork();

			if (child == 0) {
				for (unsigned long i = 0; i < iters; i++)
					sys_mmap(0, len, MAP_PRIVATE | MAP_ANONYMOUS);
				syscall(SYS_exit_group, (int)status);
			}
			waitpid(child, NULL, 0);
			put(child);
		} else if (!strncmp(p, "forkbrk ", 8)) {
			p += 8;
			unsigned long len = arg(&p), status = arg(&p);
			unsigned long cur = syscall(SYS_brk, 0);
			pid_t child = fork();

			if (child == 0) {
				syscall(SYS_brk, cur + len);
				syscall(SYS_exit_group, (int)status);
			}
			waitpid(child, NULL, 0);
			put(child);
		} else if (!strcmp(p, "pid")) {
			put(getpid());
		} else {
			put(-22);
		}
	}
	return 0;
}
