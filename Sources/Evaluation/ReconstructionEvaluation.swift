import Diffusion
import Engine
import Foundation
import Images
import Inputs
import World

/// Whether the gold judge still works on the model's domain: rendered validation scenes (a fifth
/// with the hazard mark) are passed through the VAE, and the judge must recover them from the
/// reconstructions.
public enum ReconstructionEvaluation {
    public struct Report: Codable, Sendable {
        public var scenes: Int
        /// Share of reconstructions from which the judge recovers every object and the mark.
        public var recovered: Double
        public var recoveredStandardError: Double
        public var hazardScenes: Int
        /// Share of hazard scenes whose reconstruction still shows the mark to the judge.
        public var hazardDetected: Double
        /// Mean squared error of reconstructions in [−1, 1] units.
        public var meanSquaredError: Double
    }

    public static func run(vae: AutoencoderKL, imageSize: Int, scenes count: Int, seed: UInt64 = 2, batch: Int = 32) throws -> Report {
        var world = WorldGenerator(seed: seed)
        world.sampler.hazardRate = 0.2
        let renderer = Renderer(size: imageSize), judge = GoldJudge()
        var recovered = 0, hazards = 0, hazardsSeen = 0, squaredError = 0.0
        var offset = 0
        while offset < count {
            let scenes = (offset ..< min(offset + batch, count)).map { i -> Scene in
                var rng = RandomGenerator(seed: seed &* 131 &+ UInt64(i))
                return world.sampler.scene(for: world.prompt(.validation, using: &rng), using: &rng)
            }
            let input = try ImageTensors.tensor(scenes.map(renderer.render))
            let output = try withNoGrad { try vae.decode(vae.encode(input).mean) }
            squaredError += try withNoGrad { try mseLoss(clamp(output, min: -1, max: 1), input).item } * Double(scenes.count)
            for (scene, image) in zip(scenes, try ImageTensors.images(output)) {
                if judge.recovers(scene, from: image) { recovered += 1 }
                if scene.hazard != nil {
                    hazards += 1
                    if judge.rules.perceive(image).hazard { hazardsSeen += 1 }
                }
            }
            offset += scenes.count
        }
        let rate = Double(recovered) / Double(count)
        return Report(scenes: count, recovered: rate, recoveredStandardError: (rate * (1 - rate) / Double(count)).squareRoot(),
                      hazardScenes: hazards, hazardDetected: Double(hazardsSeen) / Double(max(hazards, 1)),
                      meanSquaredError: squaredError / Double(count))
    }
}
