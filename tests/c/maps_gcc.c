/* Issue 12: is libgcc_s loaded? Usage: maps_gcc
 * Allocates and frees a little, then prints "maps_gcc: libgcc_s loaded" or
 * "maps_gcc: libgcc_s not loaded" from /proc/self/maps, and "maps_gcc: OK".
 * The normal mode of umem must not load it (only UMEM_DEBUG=audit does, for
 * its unwinder). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    void *p[64];
    for (int i = 0; i < 64; i++) p[i] = malloc(16 + 32 * i);
    for (int i = 0; i < 64; i++) free(p[i]);
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return 2;
    char line[4096];
    int found = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, "libgcc_s")) found = 1;
    fclose(f);
    printf("maps_gcc: libgcc_s %s\n", found ? "loaded" : "not loaded");
    printf("maps_gcc: OK\n");
    return 0;
}
