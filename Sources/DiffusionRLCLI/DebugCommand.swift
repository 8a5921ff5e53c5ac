import Diffusion
import Engine
import Foundation
import Images
import RunLog

/// `diffusion-rl debug write-log`: writes a synthetic run log slowly, so that live reading
/// (`inspect --follow`), crash recovery and readers such as h5py can be tried without training.
enum DebugCommand {
    static let help = """
    usage: diffusion-rl debug write-log --out RUN.h5 [--epochs N] [--epoch-ms MS] [--force]
           diffusion-rl debug unet-parity --out DIR [--seed S] [--model DIR]

    unet-parity: writes a randomly initialized default UNet, or with --model that model's UNet
    (DIR/unet.safetensors, diffusers' names), inputs (DIR/inputs.safetensors: sample, timesteps, context) and the Swift output
    (DIR/output.safetensors), for Experiments/peers/unet_parity.py to compare with diffusers.

    write-log:
    Writes a synthetic run: metrics loss = 1/(epoch+1), reward = epoch/10 and kl = (epoch/20)² every epoch, 4
    per-sample rows and one 8×8 image per epoch, an event every 5 epochs, flushing after each
    epoch and sleeping MS milliseconds between epochs (default 0).
    """

    static func run(_ arguments: [String]) throws {
        if arguments.first == "unet-parity" { try unetParity(Array(arguments.dropFirst())); return }
        guard arguments.first == "write-log" else {
            if arguments.first == "--help" || arguments.isEmpty { print(help); return }
            throw CommandError("unknown debug subcommand '\(arguments[0])' (see diffusion-rl debug --help)", usage: true)
        }
        let args = try Arguments(Array(arguments.dropFirst()), optionNames: ["out", "epochs", "epoch-ms"], flagNames: ["force", "help"])
        if args.flag("help") { print(help); return }
        guard let out = args.string("out") else { throw CommandError("debug write-log needs --out RUN.h5", usage: true) }
        let epochs = try args.int("epochs", default: 10), pause = try args.int("epoch-ms", default: 0)
        let layout = RunLayout(metrics: ["loss", "reward", "kl"], sampleColumns: ["reward"], prompts: ["a red circle", "two blue squares"],
                               imageSize: [8, 8])
        let writer = try RunLogWriter(url: URL(fileURLWithPath: out), layout: layout,
                                      info: .current(config: #"{"kind": "synthetic"}"#, seed: 0), overwrite: args.flag("force"))
        StopSignal.install()
        for epoch in 0..<epochs {
            if StopSignal.requested {
                try writer.event(epoch: epoch, kind: "stopped", "interrupted by a signal after \(epoch) epochs; log closed cleanly")
                try writer.close()
                print("stopped after \(epoch) epochs")
                exit(130)
            }
            try writer.record("loss", 1 / Double(epoch + 1))
            try writer.record("reward", Double(epoch) / 10)
            try writer.record("kl", Double(epoch * epoch) / 400)
            try writer.appendSamples(epoch: epoch, prompts: [0, 1, 0, 1], seeds: [0, 1, 2, 3].map { Int64(epoch * 4 + $0) },
                                     columns: ["reward": [0, 1, 2, 3].map { Double(epoch) + Double($0) / 10 }])
            // A square that grows with the epoch, so image grids visibly change.
            var image = RGBImage(width: 8, height: 8, fill: [245, 245, 245])
            for y in 0..<(1 + epoch % 8) { for x in 0..<(1 + epoch % 8) { image[x, y] = epoch % 2 == 0 ? [220, 30, 30] : [30, 60, 220] } }
            try writer.appendImages(epoch: epoch, prompts: [epoch % 2], images: [image])
            if epoch % 5 == 0 { try writer.event(epoch: epoch, kind: "info", "epoch \(epoch) reached") }
            try writer.endEpoch()
            print("epoch \(epoch) written")
            fflush(stdout)
            if pause > 0 { Thread.sleep(forTimeInterval: Double(pause) / 1000) }
        }
        try writer.close()
    }

    static func unetParity(_ arguments: [String]) throws {
        let args = try Arguments(arguments, optionNames: ["out", "seed", "model"], flagNames: ["help"])
        if args.flag("help") { print(help); return }
        guard let out = args.string("out") else { throw CommandError("debug unet-parity needs --out DIR", usage: true) }
        let directory = URL(fileURLWithPath: out)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var rng = RandomGenerator(seed: UInt64(try args.int("seed", default: 0)))
        let unet: UNet2DConditionModel
        if let model = args.string("model") {
            unet = try LatentDiffusionModel.load(from: URL(fileURLWithPath: model)).unet
        } else {
            unet = try UNet2DConditionModel(using: &rng)
            // Move norms and biases off their initial values so the comparison exercises them.
            for p in unet.namedParameters() where p.name.hasSuffix("bias") || p.name.contains("norm") {
                p.tensor.assign(try p.tensor + Tensor.randn(p.tensor.shape, std: 0.1, using: &rng))
            }
        }
        let x = Tensor.randn([3, 4, 8, 8], using: &rng), context = Tensor.randn([3, 16, 64], using: &rng)
        let timesteps = [1.0, 500, 999]
        let output = try withNoGrad { try unet(x, timesteps: timesteps, context: context) }
        try Safetensors.write(unet.stateDict(), to: directory.appendingPathComponent("unet.safetensors"), metadata: ["format": "pt"])
        try Safetensors.write(["sample": x, "timesteps": try Tensor(timesteps, shape: [3]), "context": context],
                              to: directory.appendingPathComponent("inputs.safetensors"))
        try Safetensors.write(["output": output], to: directory.appendingPathComponent("output.safetensors"))
        print("wrote unet.safetensors (\(unet.parameterCount) parameters), inputs.safetensors and output.safetensors to \(directory.path)")
    }
}
