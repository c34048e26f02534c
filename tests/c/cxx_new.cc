// The replaceable global allocation functions (C++17 [new.delete]) under
// LD_PRELOAD=libumem.so, written from the standard's description of them:
// every form allocates and frees; a failed `new` calls the new-handler, then
// throws std::bad_alloc; the nothrow forms return nullptr instead; the
// aligned forms honour the alignment. Prints which object defines
// `operator new` (the test wants libumem.so there) and "cxx_new: OK".
// Usage: cxx_new
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <dlfcn.h>
#include <new>
#include <string>
#include <vector>

static int failures;
#define CHECK(c, ...)                                                   \
    do {                                                                \
        if (!(c)) {                                                     \
            std::printf("FAIL line %d: ", __LINE__);                    \
            std::printf(__VA_ARGS__);                                   \
            std::printf("\n");                                          \
            failures++;                                                 \
        }                                                               \
    } while (0)

struct alignas(64) Line {
    char b[64];
};
struct alignas(4096) Page {
    char b[100];
};

static int handler_calls;
static void handler() {
    // Give up after a few calls: the next failure throws.
    if (++handler_calls == 3) std::set_new_handler(nullptr);
}

// Kept out of the optimiser's reach, so that no new/delete pair is elided.
static volatile std::size_t huge = SIZE_MAX / 2;
static void *volatile sink;

int main() {
    void *(*op_new)(std::size_t) = &::operator new;
    Dl_info info;
    if (dladdr(reinterpret_cast<void *>(op_new), &info) && info.dli_fname)
        std::printf("operator new from %s\n", info.dli_fname);

    // Every plain form, with writes over the whole block.
    for (std::size_t n = 0; n < 5000; n += n < 64 ? 1 : 37) {
        char *a = static_cast<char *>(::operator new(n));
        std::memset(a, 1, n);
        ::operator delete(a);
        char *b = new char[n + 1];
        std::memset(b, 2, n + 1);
        delete[] b;
        char *c = static_cast<char *>(::operator new(n, std::nothrow));
        CHECK(c != nullptr, "nothrow new(%zu) failed", n);
        ::operator delete(c, std::nothrow);
        char *d = static_cast<char *>(::operator new[](n, std::nothrow));
        CHECK(d != nullptr, "nothrow new[](%zu) failed", n);
        ::operator delete[](d, std::nothrow);
        void *e = ::operator new(n + 8);
        ::operator delete(e, n + 8);  // sized
        void *f = ::operator new[](n + 8);
        ::operator delete[](f, n + 8);
    }
    // Aligned forms.
    for (std::size_t al : {32, 64, 256, 4096, 65536}) {
        for (std::size_t n : {1, 8, 100, 5000, 300000}) {
            auto v = std::align_val_t(al);
            void *a = ::operator new(n, v);
            CHECK(reinterpret_cast<std::uintptr_t>(a) % al == 0, "new(%zu, %zu) = %p", n, al, a);
            std::memset(a, 3, n);
            ::operator delete(a, v);
            void *b = ::operator new[](n, v, std::nothrow);
            CHECK(b && reinterpret_cast<std::uintptr_t>(b) % al == 0, "new[](%zu, %zu, nothrow) = %p", n, al, b);
            ::operator delete[](b, n, v);  // sized and aligned
        }
    }
    std::vector<Line *> lines;
    for (int i = 0; i < 1000; i++) {
        lines.push_back(new Line);
        CHECK(reinterpret_cast<std::uintptr_t>(lines.back()) % 64 == 0, "new Line = %p", (void *)lines.back());
    }
    for (Line *l : lines) delete l;
    Page *pg = new Page[3];
    CHECK(reinterpret_cast<std::uintptr_t>(pg) % 4096 == 0, "new Page[3] = %p", (void *)pg);
    delete[] pg;
    // Containers, strings: ordinary C++ use.
    std::vector<std::string> strs;
    for (int i = 0; i < 20000; i++) strs.push_back(std::string(i % 300, char('a' + i % 26)));
    for (int i = 0; i < 20000; i++) CHECK(strs[i].size() == std::size_t(i % 300), "string %d", i);

    // No memory: bad_alloc, from every throwing form.
    int thrown = 0;
    try { sink = ::operator new(huge); } catch (const std::bad_alloc &) { thrown++; }
    try { sink = ::operator new[](huge); } catch (const std::bad_alloc &) { thrown++; }
    try { sink = ::operator new(huge, std::align_val_t(64)); } catch (const std::bad_alloc &) { thrown++; }
    try { sink = ::operator new[](huge, std::align_val_t(64)); } catch (const std::bad_alloc &) { thrown++; }
    CHECK(thrown == 4, "%d of 4 huge news threw bad_alloc", thrown);
    // ... nullptr from the nothrow ones.
    CHECK(::operator new(huge, std::nothrow) == nullptr, "nothrow new(huge)");
    CHECK(::operator new[](huge, std::nothrow) == nullptr, "nothrow new[](huge)");
    CHECK(::operator new(huge, std::align_val_t(64), std::nothrow) == nullptr, "aligned nothrow new(huge)");
    // The new-handler is called on each failure until it removes itself;
    // then the failure throws.
    std::set_new_handler(handler);
    bool threw = false;
    try { sink = ::operator new(huge); } catch (const std::bad_alloc &) { threw = true; }
    CHECK(threw && handler_calls == 3, "new-handler called %d times, threw %d", handler_calls, threw);

    if (failures) {
        std::printf("cxx_new: %d FAILED\n", failures);
        return 1;
    }
    std::printf("cxx_new: OK\n");
    return 0;
}
