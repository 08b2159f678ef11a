// The one atomic file writer: config (config.write) and scsi (the APTPL state
// of persistent reservations) both replace files this way. It lives in
// common/, beneath every layer, because config links no other layer.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string_view>

namespace ringtgt::common {

// Replaces path with text so that a crash leaves the old file or the new one,
// never a mix: a temporary file beside it, fsync, rename, fsync of the folder.
// The new file keeps the mode of the file it replaces, else new_file_mode.
// The folder must exist. Throws std::runtime_error naming path and the step.
void write_file_atomically(const std::filesystem::path& path, std::string_view text,
                           mode_t new_file_mode = 0644);

// fsync of a folder, so that a rename or unlink in it is durable; false (errno
// set) when it cannot be opened or synced.
bool fsync_dir(const std::filesystem::path& dir);

}  // namespace ringtgt::common
