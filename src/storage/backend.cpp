// What a backend without logical block provisioning answers.
#include "ringtgt/storage/backend.hpp"

#include <cerrno>

namespace ringtgt::storage {

void Backend::unmap(std::uint64_t, std::uint64_t, IoOp* op, bool) {
  op->on_complete(-EOPNOTSUPP);
}

void Backend::write_zeroes(std::uint64_t, std::uint64_t, bool, IoOp* op) {
  op->on_complete(-EOPNOTSUPP);
}

void Backend::compare_and_write(const void*, const void*, std::size_t, std::uint64_t, bool,
                                std::uint64_t*, IoOp* op) {
  op->on_complete(-EOPNOTSUPP);
}

}  // namespace ringtgt::storage
