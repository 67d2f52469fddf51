// main.cpp — the `chat` binary (placeholder until the chat issue lands; prints usage).
#include <cstdio>
int main() { std::fprintf(stderr, "chat: not built yet\n"); return 1; }
