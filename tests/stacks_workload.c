/*
 * Two known call paths for the allocation-stack tests, built -O2 -fomit-frame-pointer (as
 * Debian builds everything), so only .eh_frame can unwind it. Driven line by line on stdin like
 * tests/workload.c; no malloc, no stdio.
 *
 *   keep N LEN     main -> cmd_keep -> keep_outer -> keep_inner -> mmap, N times: kept mapped
 *   churn N LEN    main -> cmd_churn -> churn_once -> mmap + munmap, N times
 *   pid            prints the pid
 *
 * Every reply is one number. The functions are noinline and use what they call returns, so the
 * compiler neither inlines them nor turns the calls into jumps (tail calls leave no frame).
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static volatile unsigned long sink;

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

__attribute__((noinline)) static void *keep_inner(unsigned long len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	sink += (unsigned long)p;
	return p;
}

__attribute__((noinline)) static void *keep_outer(unsigned long len)
{
	void *p = keep_inner(len);

	sink ^= len;
	return p;
}

__attribute__((noinline)) static long cmd_keep(unsigned long n, unsigned long len)
{
	long ok = 0;

	for (unsigned long i = 0; i < n; i++)
		ok += keep_outer(len) != MAP_FAILED;
	sink++;
	return ok;
}

__attribute__((noinline)) static int churn_once(unsigned long len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int r;

	if (p == MAP_FAILED)
		return -1;
	r = munmap(p, len);
	sink += r;
	return r;
}

__attribute__((noinline)) static long cmd_churn(unsigned long n, unsigned long len)
{
	long ok = 0;

	for (unsigned long i = 0; i < n; i++)
		ok += churn_once(len) == 0;
	sink++;
	return ok;
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

int main(void)
{
	char line[128];

	while (read_line(line, sizeof(line)) >= 0) {
		char *p = line;

		if (!strncmp(p, "keep ", 5)) {
			unsigned long n = strtoul(p + 5, &p, 0), len = strtoul(p, &p, 0);

			put(cmd_keep(n, len));
		} else if (!strncmp(p, "churn ", 6)) {
			unsigned long n = strtoul(p + 6, &p, 0), len = strtoul(p, &p, 0);

			put(cmd_churn(n, len));
		} else if (!strcmp(p, "pid")) {
			put(getpid());
		} else {
			put(-22);
		}
	}
	return 0;
}
