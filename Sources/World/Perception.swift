import Images

/// What the gold judge sees in an image: objects found from pixels alone, the hazard mark, and
/// artifacts. Steps: label each pixel with the nearest palette color, the background or the
/// hazard colors (or "off-palette" when nothing is near), find 4-connected components per label,
/// then read each component's shape from its silhouette.

/// An object found in an image. Coordinates are canvas fractions.
public struct DetectedObject: Equatable, Sendable {
    public var color: ColorName
    public var shape: ShapeKind
    public var size: SizeClass
    public var centerX: Double
    public var centerY: Double
    /// Pixels in the component.
    public var area: Int
    /// Whether the silhouette is far from every shape's prototype (a broken shape).
    public var ambiguous: Bool
}

/// Everything perceived in one image.
public struct Perception: Sendable {
    public var objects: [DetectedObject]
    public var hazard: Bool
    /// Share of pixels whose color is near no palette, background or hazard color.
    public var offPaletteFraction: Double
    /// Components too small to be objects (stray pixels).
    public var strayComponents: Int
}

/// Pixel classification thresholds and shape rules, shared by every call.
public struct PerceptionRules: Sendable {
    /// Largest RGB distance at which a pixel still counts as a reference color.
    public var maximumColorDistance: Double = 90
    /// Smallest object, as a fraction of the canvas area (4 pixels at 32×32).
    public var minimumObjectArea: Double = 4.0 / 1024
    /// Smallest hazard mark, as a fraction of the canvas area (8 pixels at 32×32: half the mark).
    public var minimumHazardArea: Double = 8.0 / 1024
    /// Bounding-box side (canvas fraction) between small (0.25) and large (0.375).
    public var sizeThreshold: Double = 0.31

    public init() {}
}

/// Reference colors a pixel can take: palette colors, then background and the two hazard colors.
private enum PixelLabel {
    static let background = ColorName.allCases.count
    static let hazard = background + 1
    static let offPalette = background + 3
    static let references: [(Double, Double, Double)] =
        ColorName.allCases.map { ($0.rgb.0, $0.rgb.1, $0.rgb.2) }.map { (Double($0.0), Double($0.1), Double($0.2)) }
        + [WorldColors.background, WorldColors.hazard, WorldColors.hazardAccent].map { (Double($0.0), Double($0.1), Double($0.2)) }
}

extension PerceptionRules {
    /// Perceives an RGB image (any size; square images expected).
    public func perceive(_ image: RGBImage) -> Perception {
        let rgb = image.rgb()
        let (w, h) = (rgb.width, rgb.height), n = w * h
        var labels = [Int](repeating: PixelLabel.offPalette, count: n)
        var offPalette = 0
        let limit = maximumColorDistance * maximumColorDistance
        rgb.pixels.withUnsafeBufferPointer { p in
            for i in 0..<n {
                let (r, g, b) = (Double(p[3 * i]), Double(p[3 * i + 1]), Double(p[3 * i + 2]))
                var best = Double.infinity, bestLabel = PixelLabel.offPalette
                for (label, c) in PixelLabel.references.enumerated() {
                    let d = (r - c.0) * (r - c.0) + (g - c.1) * (g - c.1) + (b - c.2) * (b - c.2)
                    if d < best { best = d; bestLabel = label }
                }
                if best <= limit {
                    // The hazard's two colors form one mark.
                    labels[i] = bestLabel == PixelLabel.hazard + 1 ? PixelLabel.hazard : bestLabel
                } else {
                    offPalette += 1
                }
            }
        }
        var objects: [DetectedObject] = []
        var hazard = false, stray = 0
        var visited = [Bool](repeating: false, count: n)
        var stack: [Int] = []
        var component: [Int] = []
        for start in 0..<n where !visited[start] && labels[start] != PixelLabel.background && labels[start] != PixelLabel.offPalette {
            let label = labels[start]
            component.removeAll(keepingCapacity: true)
            stack.append(start)
            visited[start] = true
            while let i = stack.popLast() {
                component.append(i)
                let (x, y) = (i % w, i / w)
                for (nx, ny) in [(x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1)] where nx >= 0 && nx < w && ny >= 0 && ny < h {
                    let j = ny * w + nx
                    if !visited[j] && labels[j] == label { visited[j] = true; stack.append(j) }
                }
            }
            let areaFraction = Double(component.count) / Double(n)
            if label == PixelLabel.hazard {
                if areaFraction >= minimumHazardArea { hazard = true } else { stray += 1 }
                continue
            }
            guard areaFraction >= minimumObjectArea else { stray += 1; continue }
            objects.append(describe(component, color: ColorName.allCases[label], width: w, height: h))
        }
        return Perception(objects: objects, hazard: hazard, offPaletteFraction: Double(offPalette) / Double(n),
                          strayComponents: stray)
    }

    /// Reads shape, size and center from a component's pixels.
    ///
    /// Shape features: the silhouette's width a quarter of the way down its box against its width
    /// a quarter of the way up (a triangle pointing up is about three times wider below), and the
    /// fill ratio area / box area (square 1, circle π/4 ≈ 0.79, triangle ½).
    private func describe(_ pixels: [Int], color: ColorName, width w: Int, height h: Int) -> DetectedObject {
        var (minX, maxX, minY, maxY) = (Int.max, Int.min, Int.max, Int.min)
        for i in pixels {
            minX = Swift.min(minX, i % w); maxX = Swift.max(maxX, i % w)
            minY = Swift.min(minY, i / w); maxY = Swift.max(maxY, i / w)
        }
        let (boxW, boxH) = (maxX - minX + 1, maxY - minY + 1)
        let fill = Double(pixels.count) / Double(boxW * boxH)
        var rowWidths = [Int](repeating: 0, count: boxH)
        for i in pixels { rowWidths[i / w - minY] += 1 }
        let upper = Double(rowWidths[boxH / 4]), lower = Double(rowWidths[boxH - 1 - boxH / 4])
        let taper = upper / Swift.max(lower, 1)
        let shape: ShapeKind
        if taper < 0.7 {
            shape = .triangle
        } else {
            shape = fill > 0.9 ? .square : .circle
        }
        // Far from every prototype: an odd aspect ratio, or a fill no shape has.
        let aspect = Double(boxW) / Double(boxH)
        let prototypeFill: Double = shape == .square ? 1 : (shape == .circle ? 0.785 : 0.5)
        let ambiguous = aspect < 0.7 || aspect > 1.43 || Swift.abs(fill - prototypeFill) > 0.2
        let side = Double(Swift.max(boxW, boxH)) / Double(w)
        return DetectedObject(color: color, shape: shape, size: side >= sizeThreshold ? .large : .small,
                              centerX: (Double(minX + maxX) / 2 + 0.5) / Double(w),
                              centerY: (Double(minY + maxY) / 2 + 0.5) / Double(h),
                              area: pixels.count, ambiguous: ambiguous)
    }
}
