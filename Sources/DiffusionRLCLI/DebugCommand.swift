import Diffusion
import Distributed
import Engine
import Foundation
import Images
import RunLog

/// `diffusion-rl debug write-log`: writes a synthetic run log slowly, so that live reading
/// (`inspect --follow`), crash recovery and readers such as h5py can be tried without training.
enum DebugCommand {
    static let command = Command("debug", summary: "tools for trying readers and crash recovery, and for parity with diffusers", subcommands: [
        Command("write-log", summary: "a synthetic run log, written slowly", description: """
            Writes a synthetic run: metrics loss = 1/(epoch+1), reward = epoch/10 and kl = (epoch/20)²
            every epoch, 4 per-sample rows and one 8×8 image per epoch, an event every 5 epochs,
            flushing after each epoch and sleeping MS milliseconds between epochs, so that live
            reading (inspect --follow), crash recovery and readers such as h5py can be tried without
            training.
            """, options: [
                .text("out", "RUN.h5", required: true, "the log to write"),
                .integer("epochs", default: 10, minimum: 0, "epochs"),
                .integer("epoch-ms", "MS", default: 0, minimum: 0, "pause between epochs"),
                .flag("force", "overwrite an existing log"),
            ], run: writeLog),
        Command("unet-parity", summary: "a UNet, inputs and its output, for comparison with diffusers", description: """
            Writes a randomly initialized default UNet, or with --model that model's UNet
            (DIR/unet.safetensors, diffusers' names), inputs (DIR/inputs.safetensors: sample,
            timesteps, context) and the Swift output (DIR/output.safetensors) computed as sampling
            computes it (transformed convolution kernels kept, so the 3×3 convolutions run
            Winograd), for Experiments/peers/unet_parity.py to compare with diffusers.
            """, options: [
                .text("out", "DIR", required: true, "the folder to write"),
                .integer("seed", default: 0, minimum: 0, "initialization and input seed"),
                .text("model", "DIR", "a model folder whose UNet to write instead of a random one"),
            ], run: unetParity),
        FuzzCommand.command,
        Command("communicator", summary: "the collectives between this job's processes (run it under mpirun -np N)", description: """
            Runs each collective once and prints, from rank 0, what every rank received: the sum over
            ranks of [rank + 1, 10·(rank + 1)] (as doubles and as floats), every rank's bytes "rank R"
            gathered, and rank (size − 1)'s bytes broadcast. Without mpirun it is one process and
            MPI is not initialized.
            """, options: [.json], run: communicator),
    ])

    /// What `debug communicator` prints.
    struct CommunicatorCheck: Encodable {
        var size: Int
        var sumDouble: [Double]
        var sumFloat: [Float]
        var gathered: [String]
        var broadcast: String
        var agree: Bool
    }

    static func communicator(_ args: ParsedArguments) throws {
        let comm = try currentCommunicator()
        var doubles = [Double(comm.rank + 1), 10 * Double(comm.rank + 1)]
        try comm.allreduceSum(&doubles)
        var floats = [Float(comm.rank + 1), 10 * Float(comm.rank + 1)]
        try comm.allreduceSum(&floats)
        let gathered = try comm.allgather(Array("rank \(comm.rank)".utf8)).map { String(decoding: $0, as: UTF8.self) }
        var message = Array("from rank \(comm.rank)".utf8)
        try comm.broadcast(&message, root: comm.size - 1)
        // Every rank checks what it received; rank 0 learns whether all agree.
        let expected = Double(comm.size * (comm.size + 1) / 2)
        let right = doubles == [expected, 10 * expected] && floats == [Float(expected), 10 * Float(expected)]
            && gathered == (0..<comm.size).map { "rank \($0)" } && message == Array("from rank \(comm.size - 1)".utf8)
        var wrong = [right ? 0.0 : 1.0]
        try comm.allreduceSum(&wrong)
        try comm.barrier()
        guard comm.rank == 0 else { return }
        let check = CommunicatorCheck(size: comm.size, sumDouble: doubles, sumFloat: floats, gathered: gathered,
                                      broadcast: String(decoding: message, as: UTF8.self), agree: wrong[0] == 0)
        if args.flag("json") { try printJSON(check); return }
        print("\(check.size) process\(check.size == 1 ? "" : "es"): sums \(check.sumDouble) and \(check.sumFloat), gathered \(check.gathered), "
              + "broadcast '\(check.broadcast)'; every rank received the same: \(check.agree)")
    }

    static func writeLog(_ args: ParsedArguments) throws {
        let out = args.string("out")!
        let epochs = args.int("epochs")!, pause = args.int("epoch-ms")!
        let layout = RunLayout(metrics: ["loss", "reward", "kl"], sampleColumns: ["reward"], prompts: ["a red circle", "two blue squares"],
                               imageSize: [8, 8])
        let writer = try RunLogWriter(url: URL(fileURLWithPath: out), layout: layout,
                                      info: .current(config: #"{"kind": "synthetic"}"#, seed: 0), overwrite: args.flag("force"))
        StopSignal.install()
        for epoch in 0..<epochs {
            try writer.stopIfRequested("after \(epoch) epochs")
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
            progress("epoch \(epoch) written")
            if pause > 0 { Thread.sleep(forTimeInterval: Double(pause) / 1000) }
        }
        try writer.close()
    }

    static func unetParity(_ args: ParsedArguments) throws {
        let directory = URL(fileURLWithPath: args.string("out")!)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var rng = RandomGenerator(seed: UInt64(args.int("seed")!))
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
        // As sampling runs it: kernels kept, so every 3×3 convolution with channels in eights takes
        // Winograd even at this batch.
        let output = try withNoGrad { try withFixedKernels { try unet(x, timesteps: timesteps, context: context) } }
        try Safetensors.write(unet.stateDict(), to: directory.appendingPathComponent("unet.safetensors"), metadata: ["format": "pt"])
        try Safetensors.write(["sample": x, "timesteps": try Tensor(timesteps, shape: [3]), "context": context],
                              to: directory.appendingPathComponent("inputs.safetensors"))
        try Safetensors.write(["output": output], to: directory.appendingPathComponent("output.safetensors"))
        print("wrote unet.safetensors (\(unet.parameterCount) parameters), inputs.safetensors and output.safetensors to \(directory.path)")
    }
}
