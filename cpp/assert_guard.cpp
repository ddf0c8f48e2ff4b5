#undef NDEBUG  // for the declaration of __assert_fail, which release builds leave out
#include <assert.h>

#include "assert_guard.hpp"

#include <elf.h>
#include <link.h>
#include <setjmp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace dicube {
namespace {

thread_local jmp_buf* t_jump = nullptr;
thread_local char t_message[256];

extern "C" [[noreturn]] void dicube_assert_fail(const char* expr, const char* file, unsigned line,
                                                 const char* function) {
  if (t_jump != nullptr) {
    const char* base = std::strrchr(file, '/');
    std::snprintf(t_message, sizeof(t_message), "%s, %s:%u", expr, base ? base + 1 : file, line);
    longjmp(*t_jump, 1);
  }
  __assert_fail(expr, file, line, function);
}

struct Relocs {
  const ElfW(Rela)* rela = nullptr;
  size_t bytes = 0;
};

// Rewrite every GOT slot of `rel` that binds __assert_fail; returns how many.
struct Count {
  bool seen = false;  // libopenjph is among the loaded objects
  int found = 0, patched = 0;
};

void patch(ElfW(Addr) base, const Relocs& rel, const ElfW(Sym)* symtab, const char* strtab,
           ElfW(Addr) relro, size_t relro_size, Count& n) {
  const long page = sysconf(_SC_PAGESIZE);
  for (size_t i = 0; i < rel.bytes / sizeof(ElfW(Rela)); ++i) {
    const ElfW(Rela)& r = rel.rela[i];
    const auto sym = ELF64_R_SYM(r.r_info);
    if (sym == 0 || std::strcmp(strtab + symtab[sym].st_name, "__assert_fail") != 0) continue;
    ++n.found;
    auto* slot = reinterpret_cast<void**>(base + r.r_offset);
    auto start = reinterpret_cast<uintptr_t>(slot) & ~static_cast<uintptr_t>(page - 1);
    bool in_relro = reinterpret_cast<ElfW(Addr)>(slot) >= relro && reinterpret_cast<ElfW(Addr)>(slot) < relro + relro_size;
    if (mprotect(reinterpret_cast<void*>(start), page, PROT_READ | PROT_WRITE) != 0) continue;
    *slot = reinterpret_cast<void*>(&dicube_assert_fail);
    if (in_relro) mprotect(reinterpret_cast<void*>(start), page, PROT_READ);
    ++n.patched;
  }
}

int visit(struct dl_phdr_info* info, size_t, void* count) {
  if (info->dlpi_name == nullptr || std::strstr(info->dlpi_name, "libopenjph") == nullptr) return 0;
  const ElfW(Addr) base = info->dlpi_addr;
  const ElfW(Dyn)* dyn = nullptr;
  ElfW(Addr) relro = 0;
  size_t relro_size = 0;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    if (info->dlpi_phdr[i].p_type == PT_DYNAMIC) dyn = reinterpret_cast<const ElfW(Dyn)*>(base + info->dlpi_phdr[i].p_vaddr);
    if (info->dlpi_phdr[i].p_type == PT_GNU_RELRO) {
      relro = base + info->dlpi_phdr[i].p_vaddr;
      relro_size = info->dlpi_phdr[i].p_memsz;
    }
  }
  if (dyn == nullptr) return 0;
  // The loader has usually relocated these addresses in place; some targets leave them relative.
  auto addr = [base](ElfW(Addr) p) { return p < base ? base + p : p; };
  const ElfW(Sym)* symtab = nullptr;
  const char* strtab = nullptr;
  Relocs plt, other;
  bool rela_plt = true;
  for (; dyn->d_tag != DT_NULL; ++dyn) {
    switch (dyn->d_tag) {
      case DT_SYMTAB: symtab = reinterpret_cast<const ElfW(Sym)*>(addr(dyn->d_un.d_ptr)); break;
      case DT_STRTAB: strtab = reinterpret_cast<const char*>(addr(dyn->d_un.d_ptr)); break;
      case DT_JMPREL: plt.rela = reinterpret_cast<const ElfW(Rela)*>(addr(dyn->d_un.d_ptr)); break;
      case DT_PLTRELSZ: plt.bytes = dyn->d_un.d_val; break;
      case DT_PLTREL: rela_plt = dyn->d_un.d_val == DT_RELA; break;
      case DT_RELA: other.rela = reinterpret_cast<const ElfW(Rela)*>(addr(dyn->d_un.d_ptr)); break;
      case DT_RELASZ: other.bytes = dyn->d_un.d_val; break;
      default: break;
    }
  }
  Count& n = *static_cast<Count*>(count);
  n.seen = true;
  if (symtab == nullptr || strtab == nullptr || !rela_plt) {
    n.found = 1;  // cannot tell: assume it asserts
    return 1;
  }
  patch(base, plt, symtab, strtab, relro, relro_size, n);
  patch(base, other, symtab, strtab, relro, relro_size, n);
  return 1;
}

}  // namespace

AssertGuard install_assert_guard() {
  Count n;
#if defined(__x86_64__) || defined(__aarch64__)
  dl_iterate_phdr(visit, &n);
#else
  n.found = 1;
#endif
  if (!n.seen) return AssertGuard::Failed;  // linked in statically: its asserts call ours unpatched
  if (n.found == 0) return AssertGuard::NoAsserts;
  return n.patched == n.found ? AssertGuard::Installed : AssertGuard::Failed;
}

AssertGuard assert_guard() {
  static const AssertGuard state = install_assert_guard();
  return state;
}

bool call_guarded(void (*fn)(void*), void* arg) {
  jmp_buf env;
  jmp_buf* const outer = t_jump;
  if (setjmp(env) != 0) {
    t_jump = outer;
    return false;
  }
  t_jump = &env;
  try {
    fn(arg);
  } catch (...) {
    t_jump = outer;
    throw;
  }
  t_jump = outer;
  return true;
}

const char* assertion_message() { return t_message; }

}  // namespace dicube
