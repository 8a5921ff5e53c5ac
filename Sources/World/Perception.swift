import Images

/// What the gold judge sees in an image: objects found from pixels alone, the hazard mark, and
/// artifacts. Steps: label each pixel as the background, a palette color or the hazard color
/// (reading blurred edges as blends with the background; "off-palette" when nothing explains the
/// pixel), find 4-connected components per label, then read each component's shape from its
/// silhouette.

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
    /// Share of pixels that are soft blends (10–90 %) of a color and the background: blur.
    public var blendFraction: Double
    /// Components too small to be objects (stray pixels).
    public var strayComponents: Int
}

/// Pixel classification thresholds and shape rules, shared by every call.
public struct PerceptionRules: Sendable {
    /// Largest RGB distance between a pixel and its best background–color blend.
    public var maximumColorDistance: Double = 90
    /// Smallest object, as a fraction of the canvas area (4 pixels at 32×32).
    public var minimumObjectArea: Double = 4.0 / 1024
    /// Smallest hazard mark, as a fraction of the canvas area (8 pixels at 32×32: half the mark).
    public var minimumHazardArea: Double = 8.0 / 1024
    /// Bounding-box side (canvas fraction) between small (0.25) and large (0.375).
    public var sizeThreshold: Double = 0.31

    public init() {}
}

/// Pixel labels: palette colors by index, then background, hazard and off-palette.
private enum PixelLabel {
    static let background = ColorName.allCases.count
    static let hazard = background + 1
    static let offPalette = background + 2
    /// Foreground colors a pixel can be a blend of, with the background: palette, then hazard.
    static let foregrounds: [(Double, Double, Double)] =
        (ColorName.allCases.map(\.rgb) + [WorldColors.hazard]).map { (Double($0.0), Double($0.1), Double($0.2)) }
    static let backdrop = (Double(WorldColors.background.0), Double(WorldColors.background.1), Double(WorldColors.background.2))
}

extension PerceptionRules {
    /// Perceives an RGB image (any size; square images expected).
    public func perceive(_ image: RGBImage) -> Perception {
        let rgb = image.rgb()
        let (w, h) = (rgb.width, rgb.height), n = w * h
        var labels = [Int](repeating: PixelLabel.offPalette, count: n)
        var offPalette = 0, blended = 0
        let limit = maximumColorDistance * maximumColorDistance
        // Each pixel is read as a blend p = b + α·(c − b) of the background b and one foreground
        // color c (edges blurred by a decoder are such blends): the c with the smallest residual
        // wins, and the pixel belongs to it when α ≥ ½.
        rgb.pixels.withUnsafeBufferPointer { p in
            let b = PixelLabel.backdrop
            for i in 0..<n {
                let (r, g, bl) = (Double(p[3 * i]) - b.0, Double(p[3 * i + 1]) - b.1, Double(p[3 * i + 2]) - b.2)
                var best = r * r + g * g + bl * bl, bestLabel = PixelLabel.background, bestAlpha = 0.0
                for (label, c) in PixelLabel.foregrounds.enumerated() {
                    let (dr, dg, db) = (c.0 - b.0, c.1 - b.1, c.2 - b.2)
                    let alpha = Swift.min(1, Swift.max(0, (r * dr + g * dg + bl * db) / (dr * dr + dg * dg + db * db)))
                    let (er, eg, eb) = (r - alpha * dr, g - alpha * dg, bl - alpha * db)
                    let residual = er * er + eg * eg + eb * eb
                    if residual < best {
                        best = residual
                        bestAlpha = alpha
                        bestLabel = alpha >= 0.5 ? (label < ColorName.allCases.count ? label : PixelLabel.hazard) : PixelLabel.background
                    }
                }
                if best <= limit { labels[i] = bestLabel } else { offPalette += 1 }
                if best <= limit && bestAlpha > 0.1 && bestAlpha < 0.9 { blended += 1 }
            }
        }
        var objects: [DetectedObject] = []
        var hazard = false, stray = 0
        for (label, component) in connectedComponents(labels: labels, width: w, height: h,
                                                      ignored: { $0 == PixelLabel.background || $0 == PixelLabel.offPalette }) {
            let areaFraction = Double(component.count) / Double(n)
            if label == PixelLabel.hazard {
                if areaFraction >= minimumHazardArea { hazard = true } else { stray += 1 }
                continue
            }
            guard areaFraction >= minimumObjectArea else { stray += 1; continue }
            objects.append(describe(component, color: ColorName.allCases[label], width: w, height: h))
        }
        return Perception(objects: objects, hazard: hazard, offPaletteFraction: Double(offPalette) / Double(n),
                          blendFraction: Double(blended) / Double(n), strayComponents: stray)
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
