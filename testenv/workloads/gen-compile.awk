# SPDX-License-Identifier: Apache-2.0
# Generates a large C translation unit for the gcc trace: N functions with
# loops, switches, structs and calls, so that cc1 -O2 builds and rewrites
# big IR for several seconds. usage: awk -v n=3000 -f gen-compile.awk > big.c
BEGIN {
	if (n == 0) n = 3000
	print "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include <math.h>"
	print "struct rec { int a, b; double w; char name[16]; struct rec *next; };"
	for (i = 0; i < n; i++) {
		printf "static int f%d(struct rec *r, int k, const int *v, int len) {\n", i
		printf "\tint s = %d, t = k * %d;\n", i, i % 97 + 3
		printf "\tfor (int j = 0; j < len; j++) {\n"
		printf "\t\tswitch ((v[j] + t) %% %d) {\n", i % 7 + 3
		for (c = 0; c < i % 7 + 3; c++)
			printf "\t\tcase %d: s += v[j] * %d + (s >> %d); r->a ^= s; break;\n", c, c + i % 13, c % 5 + 1
		printf "\t\tdefault: s -= j; break;\n\t\t}\n"
		printf "\t\tif (r->next && (s & %d)) r->next->w += sqrt((double)(s & 1023)) * %d.5;\n", i % 31 + 1, i % 5
		printf "\t}\n"
		printf "\tsnprintf(r->name, sizeof r->name, \"f%d-%%d\", s);\n", i
		if (i > 0)
			printf "\tif (k > 0) s += f%d(r, k - 1, v, len / 2);\n", int(i / 2)
		printf "\treturn s + (int)strlen(r->name);\n}\n"
	}
	print "int main(int argc, char **argv) {\n\tstruct rec r = {0}; int v[64]; long s = 0;"
	print "\tfor (int i = 0; i < 64; i++) v[i] = rand();"
	for (i = 0; i < n; i++)
		printf "\ts += f%d(&r, argc, v, 64);\n", i
	print "\tprintf(\"%ld\\n\", s);\n\treturn 0;\n}"
}
