// tokenize — Tekken ids of a text (or of a file), the text of a list of ids, and an encoding benchmark.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "tokenizer.h"

namespace {

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + path);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::vector<int32_t> parse_ids(const std::string& list) {
    std::vector<int32_t> ids;
    std::string item;
    std::istringstream in(list);
    while (std::getline(in, item, ',')) {
        size_t used = 0;
        int64_t id = std::stoll(item, &used);
        if (item.find_first_not_of(" \t\n", used) != std::string::npos || id < INT32_MIN || id > INT32_MAX)
            throw std::invalid_argument("");
        ids.push_back(int32_t(id));
    }
    return ids;
}

void bench(const mistral::Tokenizer& tok, const std::string& text) {
    constexpr int kReps = 10;
    std::vector<double> ms;
    size_t n_ids = 0;
    for (int i = 0; i <= kReps; ++i) {  // the first run warms caches and is not counted
        auto t0 = std::chrono::steady_clock::now();
        n_ids = tok.encode(text).size();
        auto t1 = std::chrono::steady_clock::now();
        if (i > 0) ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    const double med = ms[ms.size() / 2];
    std::fprintf(stderr, "encode: %zu bytes -> %zu ids, median %.2f ms (min %.2f) over %d runs, %.1f MB/s\n",
                 text.size(), n_ids, med, ms.front(), kReps, text.size() / (med * 1e3));
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Tekken tokenizer: text to ids, ids to text"};
    std::string model, text, file, decode_ids;
    bool json = false, bos = false, keep_special = false, do_bench = false;
    app.add_option("-m,--model", model, "model folder or tekken.json")->required();
    auto* text_opt = app.add_option("--text", text, "text to encode");
    auto* file_opt = app.add_option("-f,--file", file, "file whose contents to encode")->excludes(text_opt);
    auto* decode_opt = app.add_option("--decode", decode_ids, "comma-separated ids to decode (text printed as is)")
                           ->excludes(text_opt)
                           ->excludes(file_opt);
    app.add_flag("--json", json, "print the ids as a JSON array");
    app.add_flag("--bos", bos, "put <s> before the ids");
    app.add_flag("--keep-special", keep_special, "with --decode: write control tokens as their names");
    app.add_flag("--bench", do_bench, "time the encoding (on stderr) instead of printing ids");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : 1;  // --help is not an error
    }

    try {
        const mistral::Tokenizer tok(model);
        if (*decode_opt) {
            std::vector<int32_t> ids;
            try {
                ids = parse_ids(decode_ids);
            } catch (const std::logic_error&) {
                throw std::runtime_error("--decode wants comma-separated integers, got \"" + decode_ids + "\"");
            }
            std::cout << tok.decode(ids, keep_special) << std::flush;
            return 0;
        }
        if (!*text_opt && !*file_opt) throw std::runtime_error("give --text, -f or --decode");
        if (*file_opt) text = read_file(file);
        if (do_bench) {
            bench(tok, text);
            return 0;
        }
        std::vector<int32_t> ids;
        if (bos) ids.push_back(tok.bos());
        tok.encode(text, ids);
        if (json) {
            std::cout << '[';
            for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? ", " : "") << ids[i];
            std::cout << "]\n";
        } else {
            for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? " " : "") << ids[i];
            std::cout << '\n';
        }
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << '\n';
        return 1;
    }
    return 0;
}
