import Diffusion

/// The sampler's options (`--steps`, `--eta`, `--guidance`, `--seed`), declared once for every
/// command that generates images, and the settings they give.
enum SamplingOptions {
    static let options: [Option] = [
        .integer("steps", default: 20, minimum: 1, "DDIM steps"),
        .number("eta", default: 1, minimum: 0, "DDIM η (0 deterministic, 1 DDPM-like)"),
        .number("guidance", default: 5, minimum: 0, "classifier-free guidance scale"),
        .integer("seed", default: 0, minimum: 0, "noise seed"),
    ]

    static func settings(_ args: ParsedArguments) -> SamplingSettings {
        var settings = SamplingSettings()
        settings.steps = args.int("steps")!
        settings.seed = UInt64(args.int("seed")!)
        settings.eta = args.double("eta")!
        settings.guidance = args.double("guidance")!
        return settings
    }
}
