/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ep: an NPB-EP-like compute-bound kernel (Embarrassingly Parallel, NAS
 * Parallel Benchmarks), written from the benchmark's published description.
 * Batches of 2*NK uniform deviates come from the NPB linear congruential
 * generator (a = 5^13, modulus 2^46); accepted pairs give Gaussian deviates
 * by the Marsaglia polar method, tallied in square annuli. Memory: one batch
 * buffer (1 MiB) rewritten every batch, plus the tallies.
 * With 2^24 pairs it prints NPB class S's verified sums (sx -3.247834652035e+03,
 * sy -6.958407078382e+03).
 * usage: ep LOG2_PAIRS [LOG2_BATCH]  (2^LOG2_PAIRS pairs in batches of
 * 2^LOG2_BATCH, default 16 as in NPB; a smaller batch gives a smaller memory
 * footprint for the committed fixtures; the recorder stops it)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define MK 16 /* NPB's batch: 2^16 pairs, a 1 MiB buffer */
#define NQ 10

static double x[2 << MK];

static const double r23 = 1.0 / 8388608.0, t23 = 8388608.0;
static const double r46 = r23 * r23, t46 = t23 * t23;

/* randlc advances *seed by a and returns the deviate (NPB's randlc). */
static double randlc(double *seed, double a)
{
	double a1 = (double)(long)(r23 * a), a2 = a - t23 * a1;
	double x1 = (double)(long)(r23 * *seed), x2 = *seed - t23 * x1;
	double t1 = a1 * x2 + a2 * x1;
	double t2 = (double)(long)(r23 * t1);
	double z = t1 - t23 * t2;
	double t3 = t23 * z + a2 * x2;
	double t4 = (double)(long)(r46 * t3);
	*seed = t3 - t46 * t4;
	return r46 * *seed;
}

int main(int argc, char **argv)
{
	int m = argc > 1 ? atoi(argv[1]) : 28;
	int mk = argc > 2 ? atoi(argv[2]) : MK;
	if (mk < 1 || mk > MK || m < mk) {
		fprintf(stderr, "ep: want LOG2_BATCH in 1..%d and <= LOG2_PAIRS\n", MK);
		return 2;
	}
	int nk = 1 << mk;
	long batches = 1L << (m - mk);
	double a = 1220703125.0, seed = 271828183.0, q[NQ] = {0}, sx = 0, sy = 0;

	for (long k = 0; k < batches; k++) {
		for (int i = 0; i < 2 * nk; i++)
			x[i] = randlc(&seed, a);
		for (int i = 0; i < nk; i++) {
			double x1 = 2 * x[2 * i] - 1, x2 = 2 * x[2 * i + 1] - 1;
			double t1 = x1 * x1 + x2 * x2;
			if (t1 <= 1.0) {
				double t2 = sqrt(-2.0 * log(t1) / t1);
				double t3 = x1 * t2, t4 = x2 * t2;
				int l = (int)fmax(fabs(t3), fabs(t4));
				if (l < NQ)
					q[l] += 1;
				sx += t3;
				sy += t4;
			}
		}
	}
	printf("sx %.12e sy %.12e", sx, sy);
	for (int l = 0; l < NQ; l++)
		printf(" q%d %.0f", l, q[l]);
	printf("\n");
	return 0;
}
