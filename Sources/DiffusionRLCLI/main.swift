import Foundation

// A file that would grow past the process's size limit (RLIMIT_FSIZE, as on a size-limited file
// system) fails its write with EFBIG, reported as one line like any other write error, instead of
// SIGXFSZ ending the process mid-write.
signal(SIGXFSZ, SIG_IGN)
// The `diffusion-rl` command: parses arguments and calls the libraries. All logic lives there.
DiffusionRLCommand.main(Array(CommandLine.arguments.dropFirst()))
