// C++ exceptions under LD_PRELOAD=libumem.so: libumem keeps its own stand-ins
// for the unwinder's functions hidden, so the program's throws (from several
// threads, with allocation on the way) still use the real unwinder.
// Usage: cxx_throw
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

static int deep(int n, std::vector<std::string> &keep) {
    keep.push_back(std::string(40 + n % 50, char('a' + n % 26)));
    if (n == 0) throw std::runtime_error("bottom of " + keep.front());
    return deep(n - 1, keep) + 1;
}

int main() {
    std::vector<std::thread> ts;
    std::vector<int> caught(4, 0);
    for (int t = 0; t < 4; t++)
        ts.emplace_back([t, &caught] {
            for (int i = 0; i < 2000; i++) {
                std::vector<std::string> keep;
                try {
                    deep(20 + (i + t) % 30, keep);
                } catch (const std::exception &e) {
                    if (std::string(e.what()).rfind("bottom of ", 0) == 0) caught[t]++;
                }
            }
        });
    for (auto &t : ts) t.join();
    int total = caught[0] + caught[1] + caught[2] + caught[3];
    std::printf(total == 8000 ? "cxx_throw: OK\n" : "cxx_throw: FAILED %d\n", total);
    return total == 8000 ? 0 : 1;
}
