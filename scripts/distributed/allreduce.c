/* The MPI library's own all-reduce, timed as crates/diffusion/examples/allreduce_bandwidth.rs times diffuse's: a
 * float sum over every rank of ELEMENTS values, ITERATIONS times after 3 untimed ones, each round closed by the
 * all-reduce itself (every rank waits for all). Rank 0 prints one line in the example's format.
 *
 * Build and run (scripts/measure-distributed.sh does both):
 *   mpicc -O2 -o target/release/allreduce_c scripts/distributed/allreduce.c
 *   mpirun -np 2 target/release/allreduce_c 1048576 20
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    long elements = argc > 1 ? atol(argv[1]) : 1L << 20;
    int iterations = argc > 2 ? atoi(argv[2]) : 20;
    if (elements <= 0 || elements > 1L << 30 || iterations <= 0) {
        if (rank == 0) fprintf(stderr, "usage: allreduce_c ELEMENTS (1..2^30) ITERATIONS (> 0)\n");
        MPI_Finalize();
        return 2;
    }
    float *send = malloc(elements * sizeof(float));
    float *received = malloc(elements * sizeof(float));
    if (!send || !received) {
        fprintf(stderr, "rank %d: cannot allocate 2 x %ld floats\n", rank, elements);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    for (long i = 0; i < elements; i++) send[i] = 1.0f;
    for (int i = 0; i < 3; i++) MPI_Allreduce(send, received, (int)elements, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Barrier(MPI_COMM_WORLD);
    double begun = MPI_Wtime();
    for (int i = 0; i < iterations; i++)
        MPI_Allreduce(send, received, (int)elements, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    double seconds = (MPI_Wtime() - begun) / iterations;
    if (received[0] != (float)size) {
        fprintf(stderr, "rank %d: the sum is %g, not %d\n", rank, received[0], size);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (rank == 0) {
        double bytes = (double)elements * sizeof(float);
        double bus = bytes * 2.0 * (size - 1) / size;
        printf("MPI_Allreduce  ranks %d  elements %ld  bytes %.0f  seconds %.6e  algbw_GBps %.3f  busbw_GBps %.3f\n",
               size, elements, bytes, seconds, bytes / seconds / 1e9, bus / seconds / 1e9);
    }
    free(send);
    free(received);
    MPI_Finalize();
    return 0;
}
