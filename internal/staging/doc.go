// Package staging makes the hidden directories that outputs are built in
// before they appear under their final name, and cleans up the ones that a
// killed process left behind.
//
// An output directory OUT is built in a sibling ".OUT.tmp-XXXXXXXX" and
// renamed to OUT only when complete, so OUT never exists half-written. A
// process killed with SIGKILL (or by the OOM killer, or a power cut) cannot
// remove its staging directory, which for a pruned 7B model holds up to
// 13 GB. So each staging directory has an owner lock, the sibling file
// ".OUT.tmp-XXXXXXXX.lock", which its process holds with flock(2) for as
// long as it lives; the kernel drops the lock when the process dies, however
// it dies. New sweeps the siblings of OUT before it creates its own: a
// staging directory whose lock can be taken has no living owner and is
// removed. Directories of other outputs, of living processes and without a
// lock file are left alone.
//
// The lock file is created (and locked) before its directory, and removed
// after the directory was renamed or deleted. On systems without flock(2)
// nothing is swept.
package staging
