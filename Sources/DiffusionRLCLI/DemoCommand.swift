import Engine
import Foundation
import Layers

/// `diffusion-rl demo`: the best end-to-end run that exists so far. Until the diffusion model and
/// the trainer land, it trains a small conv net with the engine and reports held-out accuracy.
enum DemoCommand {
    static let help = """
    usage: diffusion-rl demo [--threads N] [--steps N] [--seed N]

    Trains a small conv net (conv, group norm, SiLU, strided conv, linear head) with AdamW on a
    toy task (horizontal vs vertical bars in 8×8 images under N(0, 0.7²) noise), printing progress, then reports
    held-out accuracy. It exercises the engine end to end; later issues replace it with DDPO.

      --threads N   threads (default 2)
      --steps N     optimizer steps (default 200)
      --seed N      seed for data and initialization (default 0)
    """

    static func run(_ arguments: [String]) throws {
        let args = try Arguments(arguments, optionNames: ["threads", "steps", "seed"], flagNames: ["help"])
        if args.flag("help") { print(help); return }
        let threads = try args.int("threads", default: 2), steps = try args.int("steps", default: 200)
        let seed = try args.int("seed", default: 0)
        guard steps >= 1, threads >= 1, seed >= 0 else { throw CommandError("--steps and --threads must be ≥ 1, --seed ≥ 0", usage: true) }
        Threads.set(threads)
        var rng = RandomGenerator(seed: UInt64(seed))
        let model = BarOrientationClassifier(width: 16, using: &rng)
        let (train, labels) = try BarOrientationTask.make(count: 1024, noise: 0.7, seed: UInt64(seed) + 1)
        let (test, testLabels) = try BarOrientationTask.make(count: 256, noise: 0.7, seed: UInt64(seed) + 2)
        let optimizer = AdamW(model.trainableParameters(), learningRate: 0.01, weightDecay: 0)
        let schedule = LearningRateSchedule.cosine(warmupSteps: 10, totalSteps: steps, minFactor: 0.1)
        print("demo: training a \(model.parameterCount)-parameter conv net on 1024 bar images for \(steps) steps")
        let start = Date()
        for step in 0..<steps {
            optimizer.learningRate = 0.01 * schedule.factor(at: step)
            model.zeroGrad()
            let loss = try crossEntropy(logits: model(train), targets: labels)
            try loss.backward()
            let norm = try clipGradNorm(model.trainableParameters(), maxNorm: 5)
            try optimizer.step()
            if step % 25 == 0 || step == steps - 1 {
                let elapsed = Date().timeIntervalSince(start)
                print(String(format: "step %4d  loss %.4f  grad-norm %.3f  lr %.4f  %.0f images/s", step, loss.item, norm,
                             optimizer.learningRate, Double(1024 * (step + 1)) / Swift.max(elapsed, 1e-9)))
            }
        }
        let predictions = try withNoGrad { try model(test).argmax(axis: 1) }
        let correct = zip(predictions, testLabels).filter { $0 == $1 }.count
        print(String(format: "held-out accuracy: %.1f%% (%d/256)", 100 * Double(correct) / 256, correct))
    }
}
