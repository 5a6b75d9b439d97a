#include "fakes/fault_vfs.h"

#include <sqlite3.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <random>

namespace waybill::testing {
namespace {

constexpr const char* kName = "waybill-fault";

struct State {
  std::mutex mu;
  bool active = false;
  FaultVfsConfig config;
  std::mt19937_64 rng;
  int64_t grown = 0;  // bytes by which the files grew since Set
  FaultVfsCounters counters;
};

State& S() {
  static State state;
  return state;
}

sqlite3_vfs* Base(sqlite3_vfs* vfs) { return static_cast<sqlite3_vfs*>(vfs->pAppData); }

struct FaultFile {
  sqlite3_file base;
  sqlite3_file* real;
  bool faulty;  // main database or WAL
};

sqlite3_file* Real(sqlite3_file* f) { return reinterpret_cast<FaultFile*>(f)->real; }

int Close(sqlite3_file* f) { return Real(f)->pMethods->xClose(Real(f)); }
int Read(sqlite3_file* f, void* buf, int amt, sqlite3_int64 off) {
  return Real(f)->pMethods->xRead(Real(f), buf, amt, off);
}

int Write(sqlite3_file* f, const void* buf, int amt, sqlite3_int64 off) {
  auto* ff = reinterpret_cast<FaultFile*>(f);
  int prefix = -1;  // bytes to write before failing; -1 = no fault
  int error = SQLITE_OK;
  if (ff->faulty) {
    State& s = S();
    std::lock_guard<std::mutex> lk(s.mu);
    ++s.counters.writes;
    if (s.active) {
      sqlite3_int64 size = 0;
      int64_t growth = 0;
      if (s.config.full_after_bytes >= 0 &&
          Real(f)->pMethods->xFileSize(Real(f), &size) == SQLITE_OK) {
        growth = std::max<int64_t>(0, off + amt - size);
      }
      if (growth > 0 && s.grown + growth > s.config.full_after_bytes) {
        // Write what still fits, as a full disk does, then report it full.
        int64_t fits_end = size + (s.config.full_after_bytes - s.grown);
        prefix = static_cast<int>(std::clamp<int64_t>(fits_end - off, 0, amt));
        growth = std::max<int64_t>(0, off + prefix - size);
        error = SQLITE_FULL;
        ++s.counters.full_errors;
      } else if (s.config.write_error_one_in > 0 && s.rng() % s.config.write_error_one_in == 0) {
        prefix = 0;
        if (s.config.short_writes && amt > 1) {
          prefix = 1 + static_cast<int>(s.rng() % static_cast<uint64_t>(amt - 1));
          ++s.counters.short_writes;
        }
        growth = std::max<int64_t>(0, std::min<int64_t>(growth, off + prefix - size));
        error = SQLITE_IOERR_WRITE;
        ++s.counters.write_errors;
      }
      s.grown += growth;
    }
  }
  if (prefix < 0) return Real(f)->pMethods->xWrite(Real(f), buf, amt, off);
  if (prefix > 0) {
    int rc = Real(f)->pMethods->xWrite(Real(f), buf, prefix, off);
    if (rc != SQLITE_OK) return rc;
  }
  return error;
}

int Truncate(sqlite3_file* f, sqlite3_int64 size) {
  return Real(f)->pMethods->xTruncate(Real(f), size);
}

int Sync(sqlite3_file* f, int flags) {
  auto* ff = reinterpret_cast<FaultFile*>(f);
  if (ff->faulty) {
    State& s = S();
    std::lock_guard<std::mutex> lk(s.mu);
    ++s.counters.syncs;
    if (s.active && s.config.sync_error_one_in > 0 && s.rng() % s.config.sync_error_one_in == 0) {
      ++s.counters.sync_errors;
      return SQLITE_IOERR_FSYNC;
    }
  }
  return Real(f)->pMethods->xSync(Real(f), flags);
}

int FileSize(sqlite3_file* f, sqlite3_int64* size) {
  return Real(f)->pMethods->xFileSize(Real(f), size);
}
int Lock(sqlite3_file* f, int level) { return Real(f)->pMethods->xLock(Real(f), level); }
int Unlock(sqlite3_file* f, int level) { return Real(f)->pMethods->xUnlock(Real(f), level); }
int CheckReservedLock(sqlite3_file* f, int* out) {
  return Real(f)->pMethods->xCheckReservedLock(Real(f), out);
}
int FileControl(sqlite3_file* f, int op, void* arg) {
  return Real(f)->pMethods->xFileControl(Real(f), op, arg);
}
int SectorSize(sqlite3_file* f) { return Real(f)->pMethods->xSectorSize(Real(f)); }
int DeviceCharacteristics(sqlite3_file* f) {
  return Real(f)->pMethods->xDeviceCharacteristics(Real(f));
}
int ShmMap(sqlite3_file* f, int region, int size, int extend, void volatile** out) {
  return Real(f)->pMethods->xShmMap(Real(f), region, size, extend, out);
}
int ShmLock(sqlite3_file* f, int offset, int n, int flags) {
  return Real(f)->pMethods->xShmLock(Real(f), offset, n, flags);
}
void ShmBarrier(sqlite3_file* f) { Real(f)->pMethods->xShmBarrier(Real(f)); }
int ShmUnmap(sqlite3_file* f, int del) { return Real(f)->pMethods->xShmUnmap(Real(f), del); }
int Fetch(sqlite3_file* f, sqlite3_int64 off, int amt, void** out) {
  return Real(f)->pMethods->xFetch(Real(f), off, amt, out);
}
int Unfetch(sqlite3_file* f, sqlite3_int64 off, void* p) {
  return Real(f)->pMethods->xUnfetch(Real(f), off, p);
}

const sqlite3_io_methods kMethods = {
    3,
    Close,
    Read,
    Write,
    Truncate,
    Sync,
    FileSize,
    Lock,
    Unlock,
    CheckReservedLock,
    FileControl,
    SectorSize,
    DeviceCharacteristics,
    ShmMap,
    ShmLock,
    ShmBarrier,
    ShmUnmap,
    Fetch,
    Unfetch,
};

int Open(sqlite3_vfs* vfs, const char* name, sqlite3_file* f, int flags, int* out_flags) {
  auto* ff = reinterpret_cast<FaultFile*>(f);
  ff->real = reinterpret_cast<sqlite3_file*>(ff + 1);
  ff->faulty = (flags & (SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_WAL)) != 0;
  int rc = Base(vfs)->xOpen(Base(vfs), name, ff->real, flags, out_flags);
  ff->base.pMethods = ff->real->pMethods != nullptr ? &kMethods : nullptr;
  return rc;
}
int Delete(sqlite3_vfs* vfs, const char* name, int sync_dir) {
  return Base(vfs)->xDelete(Base(vfs), name, sync_dir);
}
int Access(sqlite3_vfs* vfs, const char* name, int flags, int* out) {
  return Base(vfs)->xAccess(Base(vfs), name, flags, out);
}
int FullPathname(sqlite3_vfs* vfs, const char* name, int n, char* out) {
  return Base(vfs)->xFullPathname(Base(vfs), name, n, out);
}
void* DlOpen(sqlite3_vfs* vfs, const char* name) { return Base(vfs)->xDlOpen(Base(vfs), name); }
void DlError(sqlite3_vfs* vfs, int n, char* out) { Base(vfs)->xDlError(Base(vfs), n, out); }
void (*DlSym(sqlite3_vfs* vfs, void* h, const char* sym))(void) {
  return Base(vfs)->xDlSym(Base(vfs), h, sym);
}
void DlClose(sqlite3_vfs* vfs, void* h) { Base(vfs)->xDlClose(Base(vfs), h); }
int Randomness(sqlite3_vfs* vfs, int n, char* out) {
  return Base(vfs)->xRandomness(Base(vfs), n, out);
}
int Sleep(sqlite3_vfs* vfs, int us) { return Base(vfs)->xSleep(Base(vfs), us); }
int CurrentTime(sqlite3_vfs* vfs, double* out) { return Base(vfs)->xCurrentTime(Base(vfs), out); }
int GetLastError(sqlite3_vfs* vfs, int n, char* out) {
  return Base(vfs)->xGetLastError(Base(vfs), n, out);
}
int CurrentTimeInt64(sqlite3_vfs* vfs, sqlite3_int64* out) {
  return Base(vfs)->xCurrentTimeInt64(Base(vfs), out);
}

}  // namespace

const char* FaultVfs::Register() {
  static std::once_flag once;
  static sqlite3_vfs vfs;
  std::call_once(once, [] {
    sqlite3_vfs* base = sqlite3_vfs_find(nullptr);
    std::memset(&vfs, 0, sizeof(vfs));
    vfs.iVersion = 2;
    vfs.szOsFile = static_cast<int>(sizeof(FaultFile)) + base->szOsFile;
    vfs.mxPathname = base->mxPathname;
    vfs.zName = kName;
    vfs.pAppData = base;
    vfs.xOpen = Open;
    vfs.xDelete = Delete;
    vfs.xAccess = Access;
    vfs.xFullPathname = FullPathname;
    vfs.xDlOpen = DlOpen;
    vfs.xDlError = DlError;
    vfs.xDlSym = DlSym;
    vfs.xDlClose = DlClose;
    vfs.xRandomness = Randomness;
    vfs.xSleep = Sleep;
    vfs.xCurrentTime = CurrentTime;
    vfs.xGetLastError = GetLastError;
    vfs.xCurrentTimeInt64 = CurrentTimeInt64;
    sqlite3_vfs_register(&vfs, /*makeDflt=*/0);
  });
  return kName;
}

void FaultVfs::Set(const FaultVfsConfig& config) {
  State& s = S();
  std::lock_guard<std::mutex> lk(s.mu);
  s.active = true;
  s.config = config;
  s.rng.seed(config.seed);
  s.grown = 0;
  s.counters = FaultVfsCounters();
}

void FaultVfs::Clear() {
  State& s = S();
  std::lock_guard<std::mutex> lk(s.mu);
  s.active = false;
}

FaultVfsCounters FaultVfs::Counters() {
  State& s = S();
  std::lock_guard<std::mutex> lk(s.mu);
  return s.counters;
}

}  // namespace waybill::testing
