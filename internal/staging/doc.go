// Package staging is how every wanda command writes an output directory: it
// decides whether the output may be written or replaced at all (CheckTarget),
// excludes a concurrent run writing the same output, builds the output in a
// hidden sibling and moves it into place only when complete (Commit,
// Replace), and cleans up what a killed process left behind. LockDir locks a
// directory that a run uses (a work directory); Temp makes owner-locked
// scratch directories that the next run sweeps when their owner died.
//
// Files beside an output OUT (in its parent directory):
//
//	.OUT.lock                  the output's lock: held (flock(2), exclusive) from New until
//	                           Commit, Replace or Remove; holds the holder's pid. A second
//	                           New(OUT) fails at once with ErrBusy naming that pid.
//	.OUT.tmp-XXXXXXXX          a staging directory (XXXXXXXX: 8 random hex digits)
//	.OUT.tmp-XXXXXXXX.lock     its owner lock, held by its process for as long as it lives
//	.OUT.tmp-XXXXXXXX.old      an old output moved aside by Replace where the file system
//	                           cannot exchange two directories atomically
//	.OUT.tmp-XXXXXXXX.NAME     any other directory the owner derives from its staging
//	                           directory's name (prune --pack writes .packed); swept with it
//
// The output is built in the staging directory and renamed to OUT only when
// complete, so OUT never exists half-written. A process killed with SIGKILL
// (or by the OOM killer, or a power cut) cannot remove its staging
// directory, which for a pruned 7B model holds up to 13 GB; but the kernel
// drops its flock when it dies, however it dies. So Sweep (run by New and
// CheckTarget) removes every staging directory of OUT whose owner lock can be
// taken: it has no living owner. Directories of other outputs, of living
// processes and without a lock file are left alone. An aside directory is
// renamed back to OUT when OUT is missing (the process died between the two
// renames) and removed otherwise.
//
// Lock files are created (and locked) before their directory and removed
// after it was renamed or deleted, and always removed before the lock is
// dropped (a taker checks that the file it locked is still the one the path
// names). On systems without flock(2) nothing is swept and nothing excludes
// a concurrent run.
//
// Replace never removes the old output before the new one is in place: it
// exchanges the two directories atomically (Linux renameat2
// RENAME_EXCHANGE, macOS renamex_np RENAME_SWAP), else renames the old one
// aside, the new one in, and then removes the old one.
//
// Scratch directories from Temp(PARENT, PREFIX) are PARENT/PREFIX-XXXXXXXX
// with the owner lock PARENT/PREFIX-XXXXXXXX.lock, swept the same way by the
// next Temp with the same prefix.
package staging
