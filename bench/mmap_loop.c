/* The loop the tracer benchmark times: N x (mmap one anonymous page + munmap it), nothing else.
 * Prints ns per pair. With N = 0 it runs until SIGTERM or SIGINT (the storm of bench_storm.py)
 * and then prints "PAIRS SECONDS": its own count of pairs and how long it ran. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static double seconds_between(const struct timespec *a, const struct timespec *b)
{
	return (b->tv_sec - a->tv_sec) + (b->tv_nsec - a->tv_nsec) / 1e9;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 200000;
	struct timespec a, b;

	if (n <= 0) {
		struct sigaction sa = { .sa_handler = on_signal };
		long pairs = 0;

		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGINT, &sa, NULL);
		clock_gettime(CLOCK_MONOTONIC, &a);
		while (!stop) {
			void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

			if (p == MAP_FAILED)
				return 1;
			munmap(p, 4096);
			pairs++;
		}
		clock_gettime(CLOCK_MONOTONIC, &b);
		printf("%ld %.6f\n", pairs, seconds_between(&a, &b));
		return 0;
	}
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < n; i++) {
		void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED)
			return 1;
		munmap(p, 4096);
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	printf("%.1f\n", seconds_between(&a, &b) * 1e9 / n);
	return 0;
}
