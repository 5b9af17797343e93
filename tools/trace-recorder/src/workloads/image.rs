//! png: encode generated images with several compression and filter
//! settings, decode them back and compare — an image codec's buffers are few
//! and large, unlike the other workloads' many small blocks.

use std::hint::black_box;

use png::{BitDepth, ColorType, Compression, Decoder, Encoder, Filter};

use super::{Rng, Workload};

pub const WORKLOAD: Workload = Workload {
    name: "png",
    krate: "png",
    what: "encodes a generated 1024x768 RGBA image (gradients, rectangles, noise) with 4 compression/filter \
           settings and a 512x512 16-bit grayscale one, decodes each and compares, then encodes and \
           decodes 300 small 48x48 palette icons",
    prepare,
};

struct Image {
    width: u32,
    height: u32,
    color: ColorType,
    depth: BitDepth,
    palette: Option<Vec<u8>>,
    pixels: Vec<u8>,
}

fn photo(rng: &mut Rng) -> Image {
    let (width, height) = (1024u32, 768u32);
    let mut pixels = Vec::with_capacity((width * height * 4) as usize);
    for y in 0..height {
        for x in 0..width {
            let noise = rng.below(16) as u32;
            pixels.extend_from_slice(&[
                ((x * 255 / width) + noise) as u8,
                ((y * 255 / height) + noise) as u8,
                (((x ^ y) & 0xff) / 2 + noise) as u8,
                255,
            ]);
        }
    }
    // Flat rectangles compress well; the noise above does not.
    for _ in 0..60 {
        let (x0, y0) = (rng.below(width as u64) as u32, rng.below(height as u64) as u32);
        let (w, h) = (1 + rng.below(200) as u32, 1 + rng.below(150) as u32);
        let colour = [rng.below(256) as u8, rng.below(256) as u8, rng.below(256) as u8, 200];
        for y in y0..(y0 + h).min(height) {
            for x in x0..(x0 + w).min(width) {
                let i = ((y * width + x) * 4) as usize;
                pixels[i..i + 4].copy_from_slice(&colour);
            }
        }
    }
    Image { width, height, color: ColorType::Rgba, depth: BitDepth::Eight, palette: None, pixels }
}

fn depth_map(rng: &mut Rng) -> Image {
    let (width, height) = (512u32, 512u32);
    let mut pixels = Vec::with_capacity((width * height * 2) as usize);
    for y in 0..height {
        for x in 0..width {
            let v = (x * y * 3 + rng.below(64) as u32) as u16;
            pixels.extend_from_slice(&v.to_be_bytes());
        }
    }
    Image { width, height, color: ColorType::Grayscale, depth: BitDepth::Sixteen, palette: None, pixels }
}

fn icon(rng: &mut Rng) -> Image {
    let (width, height) = (48u32, 48u32);
    let colours = 2 + rng.index(15);
    let palette: Vec<u8> = (0..colours * 3).map(|_| rng.below(256) as u8).collect();
    let mut pixels = vec![0u8; (width * height) as usize];
    let (cx, cy, r) = (rng.below(48) as i64, rng.below(48) as i64, 4 + rng.below(20) as i64);
    for y in 0..height as i64 {
        for x in 0..width as i64 {
            let d = (x - cx) * (x - cx) + (y - cy) * (y - cy);
            pixels[(y * width as i64 + x) as usize] = ((d / (r * r + 1)) as usize % colours) as u8;
        }
    }
    Image { width, height, color: ColorType::Indexed, depth: BitDepth::Eight, palette: Some(palette), pixels }
}

fn encode(image: &Image, compression: Compression, filter: Filter) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = Encoder::new(&mut out, image.width, image.height);
    encoder.set_color(image.color);
    encoder.set_depth(image.depth);
    encoder.set_compression(compression);
    encoder.set_filter(filter);
    if let Some(palette) = &image.palette {
        encoder.set_palette(palette.as_slice());
    }
    let mut writer = encoder.write_header().expect("valid PNG header");
    writer.write_image_data(&image.pixels).expect("encodes");
    writer.finish().expect("finishes");
    out
}

fn decode(bytes: &[u8]) -> Vec<u8> {
    let mut reader = Decoder::new(std::io::Cursor::new(bytes)).read_info().expect("decodes header");
    let mut pixels = vec![0; reader.output_buffer_size().expect("fits in memory")];
    let info = reader.next_frame(&mut pixels).expect("decodes frame");
    pixels.truncate(info.buffer_size());
    pixels
}

fn prepare() -> Box<dyn FnMut()> {
    let mut rng = Rng::new(0x70_6e67);
    let photo = photo(&mut rng);
    let depth = depth_map(&mut rng);
    let icons: Vec<Image> = (0..300).map(|_| icon(&mut rng)).collect();
    Box::new(move || {
        for (compression, filter) in [
            (Compression::Fastest, Filter::Adaptive),
            (Compression::Fast, Filter::Sub),
            (Compression::Balanced, Filter::Adaptive),
            (Compression::High, Filter::Paeth),
        ] {
            let bytes = encode(&photo, compression, filter);
            assert!(decode(&bytes) == photo.pixels, "RGBA round trip");
            black_box(bytes);
        }
        let bytes = encode(&depth, Compression::Balanced, Filter::Up);
        assert!(decode(&bytes) == depth.pixels, "16-bit round trip");
        drop(bytes);

        // Icons are kept encoded, as an asset packer would, then decoded.
        let packed: Vec<Vec<u8>> =
            icons.iter().map(|i| encode(i, Compression::Balanced, Filter::Adaptive)).collect();
        for (bytes, icon) in packed.iter().zip(&icons) {
            assert!(decode(bytes) == icon.pixels, "icon round trip");
        }
        black_box(packed);
    })
}
