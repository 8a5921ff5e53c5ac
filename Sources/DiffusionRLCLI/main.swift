import Foundation

// The `diffusion-rl` command: parses arguments and calls the libraries. All logic lives there.
DiffusionRLCommand.main(Array(CommandLine.arguments.dropFirst()))
