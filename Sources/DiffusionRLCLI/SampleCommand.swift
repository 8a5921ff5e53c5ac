import Diffusion
import Engine
import Foundation
import Images

/// `diffusion-rl sample`: a grid of one prompt's images.
enum SampleCommand {
    static let command = Command("sample", summary: "generate a grid of images for a prompt from a model folder", description: """
        Generates n images of the prompt with DDIM (η) and classifier-free guidance, as a grid PNG.
        """, options: [
            .text("model", "DIR", required: true, "the model folder"),
            .text("prompt", "\"...\"", required: true, "the caption"),
            .text("out", "grid.png", required: true, "the grid PNG to write"),
            .integer("n", default: 16, minimum: 1, "images"),
        ] + SamplingOptions.options + [.threads], run: run)

    static func run(_ args: ParsedArguments) throws {
        Threads.set(args.int("threads")!)
        let settings = SamplingOptions.settings(args)
        let n = args.int("n")!, prompt = args.string("prompt")!, out = args.string("out")!
        let model = try LatentDiffusionModel.load(from: URL(fileURLWithPath: args.string("model")!))
        let images = try model.generate([String](repeating: prompt, count: n), settings: settings)
        try PNG.write(imageGrid(images, columns: Int(Double(n).squareRoot().rounded(.up))), to: URL(fileURLWithPath: out))
        print("wrote \(out) (\(n) samples of '\(prompt)')")
    }
}
