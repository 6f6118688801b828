/*
 * synq-snapcopy SRC DEV: copies a memory snapshot from SRC (the FIFO avml or
 * LiME writes into) onto the block device DEV with O_DIRECT, and prints the
 * exact number of bytes it copied. Runs as a static binary in the snapshot
 * guest (init.sh, synq.mode=snapshot).
 *
 * Why not busybox dd: `dd bs=1M iflag=fullblock oflag=direct` does bypass the
 * page cache, but busybox (Debian's build) reports only "N+M records", not the
 * byte count the host needs to cut the image out of the disk file. This does
 * the same thing (full 1 MiB reads from the FIFO, O_DIRECT writes from an
 * aligned buffer, nothing cached in the guest) and counts:
 *   - the last partial block is zero-padded to a multiple of 4096 so that it
 *     too can be written with O_DIRECT; the padding is not counted;
 *   - an image larger than DEV is an error (never silently cut);
 *   - fdatasync(DEV) before reporting.
 * Output (stdout), one key=value a line: bytes, padded_bytes, blocks,
 * seconds (from the first byte read to the end of fdatasync), wait_seconds
 * (from start until the writer opened the FIFO), direct=1.
 * Exit 0 on success; 1 with a message on stderr otherwise.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BLOCK (1u << 20)
#define ALIGN 4096u

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int die(const char *what)
{
	fprintf(stderr, "synq-snapcopy: %s: %s\n", what, strerror(errno));
	return 1;
}

/* Reads until buf is full or EOF; returns the byte count or -1. */
static ssize_t read_full(int fd, char *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, buf + got, n - got);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

static int write_all(int fd, const char *buf, size_t n)
{
	size_t done = 0;
	while (done < n) {
		ssize_t w = write(fd, buf + done, n - done);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		done += (size_t)w;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: synq-snapcopy SRC DEV\n");
		return 2;
	}
	double t_start = now();
	int out = open(argv[2], O_WRONLY | O_DIRECT | O_CLOEXEC);
	if (out < 0)
		return die(argv[2]);
	if ((fcntl(out, F_GETFL) & O_DIRECT) == 0) {
		fprintf(stderr, "synq-snapcopy: %s: O_DIRECT did not stick\n", argv[2]);
		return 1;
	}
	uint64_t dev_size = 0;
	struct stat st;
	if (fstat(out, &st) == 0 && S_ISBLK(st.st_mode)) {
		if (ioctl(out, BLKGETSIZE64, &dev_size) != 0)
			return die("BLKGETSIZE64");
	} else {
		fprintf(stderr, "synq-snapcopy: %s is not a block device\n", argv[2]);
		return 1;
	}
	/* Blocks until the writer (avml, LiME) opens the FIFO. */
	int in = open(argv[1], O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return die(argv[1]);
	double t_open = now();
	char *buf;
	if (posix_memalign((void **)&buf, ALIGN, BLOCK) != 0) {
		fprintf(stderr, "synq-snapcopy: out of memory\n");
		return 1;
	}
	uint64_t total = 0, padded = 0, blocks = 0;
	for (;;) {
		ssize_t n = read_full(in, buf, BLOCK);
		if (n < 0)
			return die("read");
		if (n == 0)
			break;
		size_t len = (size_t)n;
		size_t wlen = (len + ALIGN - 1) / ALIGN * ALIGN;
		if (wlen > len)
			memset(buf + len, 0, wlen - len);
		if (padded + wlen > dev_size) {
			fprintf(stderr, "synq-snapcopy: the image is larger than %s (%llu bytes)\n", argv[2],
				(unsigned long long)dev_size);
			return 1;
		}
		if (write_all(out, buf, wlen) != 0)
			return die("write");
		total += len;
		padded += wlen;
		blocks++;
		if (len < BLOCK) {
			/* A short block is the last one: anything after it would break the alignment. */
			char extra;
			ssize_t r = read_full(in, &extra, 1);
			if (r != 0) {
				fprintf(stderr, "synq-snapcopy: data after a short block (read returned %zd)\n", r);
				return 1;
			}
			break;
		}
	}
	if (fdatasync(out) != 0)
		return die("fdatasync");
	double t_end = now();
	printf("bytes=%llu\npadded_bytes=%llu\nblocks=%llu\nseconds=%.2f\nwait_seconds=%.2f\ndirect=1\n",
	       (unsigned long long)total, (unsigned long long)padded, (unsigned long long)blocks,
	       t_end - t_open, t_open - t_start);
	return 0;
}
