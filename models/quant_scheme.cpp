// quant_scheme.cpp — compressed-tensors target/ignore matching. `re:` patterns run on PCRE2 (the syntax of
// Python's re for what these lists use) with bounded nesting and match effort, so a hostile config.json can
// neither overflow the stack nor stall loading.
#include "quant_scheme.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <map>
#include <memory>
#include <stdexcept>

namespace mistral {

namespace {

struct Regex {
    std::shared_ptr<pcre2_code> code;
    std::shared_ptr<pcre2_match_data> md;
    std::shared_ptr<pcre2_match_context> ctx;
};

std::string pcre2_error(int err) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof buf);
    return reinterpret_cast<const char*>(buf);
}

const Regex& compiled(const std::string& pattern) {
    static thread_local std::map<std::string, Regex> cache;  // a checkpoint repeats a few patterns
    auto it = cache.find(pattern);
    if (it != cache.end()) return it->second;
    const std::string re = pattern.substr(3);
    int err = 0;
    PCRE2_SIZE at = 0;
    Regex r;
    r.code.reset(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(re.data()), re.size(), PCRE2_ANCHORED, &err,
                               &at, nullptr),
                 pcre2_code_free);
    if (!r.code) throw std::invalid_argument(pcre2_error(err) + " at offset " + std::to_string(at));
    r.md.reset(pcre2_match_data_create_from_pattern(r.code.get(), nullptr), pcre2_match_data_free);
    r.ctx.reset(pcre2_match_context_create(nullptr), pcre2_match_context_free);
    if (!r.md || !r.ctx) throw std::bad_alloc();
    pcre2_set_match_limit(r.ctx.get(), 1000000);  // module names are short: a sane pattern needs far fewer steps
    pcre2_set_depth_limit(r.ctx.get(), 10000);
    return cache.emplace(pattern, std::move(r)).first->second;
}

}  // namespace

void check_pattern(const std::string& pattern) {
    if (pattern.rfind("re:", 0) == 0) compiled(pattern);
}

bool module_matches(const std::string& module, const std::string& pattern) {
    if (pattern.rfind("re:", 0) != 0) return module == pattern;
    const Regex& r = compiled(pattern);
    const int rc = pcre2_match(r.code.get(), reinterpret_cast<PCRE2_SPTR>(module.data()), module.size(), 0, 0,
                               r.md.get(), r.ctx.get());
    if (rc >= 0) return true;
    if (rc == PCRE2_ERROR_NOMATCH) return false;
    throw std::invalid_argument(pcre2_error(rc) + " matching '" + module + "'");
}

const std::string* first_match(const std::vector<std::string>& names, const std::vector<std::string>& patterns) {
    for (const std::string& p : patterns)
        for (const std::string& n : names)
            if (module_matches(n, p)) return &p;
    return nullptr;
}

bool QuantScheme::quantizes(const std::vector<std::string>& names, const std::string& cls, std::string* why) const {
    std::vector<std::string> with_class = names;
    with_class.push_back(cls);  // a bare class name ("Linear") targets every module of that class
    if (!first_match(with_class, targets)) {
        *why = "no config group targets it";
        return false;
    }
    if (const std::string* p = first_match(names, ignore)) {
        *why = "'" + *p + "' is in its ignore list";
        return false;
    }
    return true;
}

}  // namespace mistral
