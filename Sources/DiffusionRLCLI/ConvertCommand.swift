import Diffusion
import Engine
import Foundation

/// `diffusion-rl convert`: a model folder's weights in another storage type.
enum ConvertCommand {
    static let command = Command("convert", summary: "rewrite a model folder's weights as F16 or F32", description: """
        Rewrites a model folder with its weights stored as F16 (half the size; how the shipped base
        model is stored) or F32.
        """, options: [
            .text("model", "DIR", required: true, "the model folder to read"),
            .text("out", "DIR2", required: true, "the model folder to write"),
            .choice("dtype", ["f16", "f32"], default: "f16", "how the weights are stored"),
            .flag("force", "overwrite a model already in DIR2"),
        ], run: run)

    static func run(_ args: ParsedArguments) throws {
        let stored: Safetensors.StoredType = args.string("dtype") == "f32" ? .f32 : .f16
        let target = URL(fileURLWithPath: args.string("out")!)
        if FileManager.default.fileExists(atPath: target.appendingPathComponent("config.json").path) && !args.flag("force") {
            throw CommandError("\(target.path) already holds a model; pass --force to overwrite")
        }
        try LatentDiffusionModel.load(from: URL(fileURLWithPath: args.string("model")!)).save(to: target, as: stored)
        print("wrote \(target.path) (\(stored.rawValue))")
    }
}
