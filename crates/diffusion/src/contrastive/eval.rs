//! Zero-shot classification and caption retrieval with a trained CLIP.
//!
//! - **Zero-shot accuracy**: each image is given the class whose prompt "a photo of a {class}" has the most similar
//!   embedding (the largest cosine); the share of images whose class is right.
//! - **Recall@k, image → text**: the image's k most similar captions (among the distinct captions of the evaluated
//!   images) include its own. **Text → image**: a caption's k most similar images include one it describes. Many
//!   images share a caption (a class and three binary attributes make at most 80 per template), so a hit is any
//!   retrieved item carrying exactly the query's caption.

use super::captions::ImageCaptions;
use crate::data::captions::{class_prompt, FASHION_CLASSES, HELD_OUT_TEMPLATES, TRAIN_TEMPLATES};
use crate::data::Dataset;
use crate::error::{Error, Result};
use diffuse_autograd::{no_grad, Var};
use diffuse_models::clip::{ClipModel, ClipTokenizer};
use diffuse_tensor::Tensor;
use serde::Serialize;
use std::collections::HashMap;

/// Which sentences the retrieval captions use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetrievalTemplates {
    /// The training templates, image i in template i mod their count.
    Train,
    /// The held-out templates, never seen in training.
    HeldOut,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClipEvalReport {
    pub images: usize,
    /// `None` without Fashion-MNIST labels.
    pub zero_shot_accuracy: Option<f64>,
    pub distinct_captions: usize,
    pub image_to_text_recall_at_1: f64,
    pub image_to_text_recall_at_5: f64,
    pub text_to_image_recall_at_1: f64,
    pub text_to_image_recall_at_5: f64,
}

/// Unit embeddings (rows) of many token sequences, in batches, without the tape.
fn text_embeddings(
    model: &ClipModel,
    tokenizer: &ClipTokenizer,
    texts: &[String],
) -> Result<Vec<Vec<f32>>> {
    let mut rows = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(256) {
        let ids = tokenizer.encode_batch(chunk)?.ids;
        let e = no_grad(|| model.text_embeds(&ids, chunk.len()))?;
        rows.extend(split_rows(e.tensor())?);
    }
    Ok(rows)
}

fn split_rows(t: &Tensor) -> Result<Vec<Vec<f32>>> {
    let width = t.shape()[1];
    Ok(t.to_vec()?
        .chunks_exact(width)
        .map(<[f32]>::to_vec)
        .collect())
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Indices of the `k` largest of `scores` (ties: the smaller index first).
fn top_k(scores: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

/// Scores the first `count` images of `data` (all with `count = None`).
pub fn evaluate(
    model: &ClipModel,
    tokenizer: &ClipTokenizer,
    data: &Dataset,
    captions: &ImageCaptions,
    templates: RetrievalTemplates,
    count: Option<usize>,
) -> Result<ClipEvalReport> {
    let m = count.unwrap_or(data.len()).min(data.len());
    if m == 0 {
        return Err(Error::train("evaluate", "no images to evaluate"));
    }
    let mut images = Vec::with_capacity(m);
    for start in (0..m).step_by(256) {
        let indices: Vec<usize> = (start..(start + 256).min(m)).collect();
        let (pixels, _) = data.batch(&indices, None)?;
        let shape = [indices.len(), data.channels, data.height, data.width];
        let pixels = Var::constant(Tensor::from_vec(pixels, &shape, model.device())?);
        let e = no_grad(|| model.image_embeds(&pixels))?;
        images.extend(split_rows(e.tensor())?);
    }
    let zero_shot_accuracy = match (captions, &data.labels) {
        (ImageCaptions::Fashion(_), Some(labels)) => {
            let prompts: Vec<String> = FASHION_CLASSES.iter().map(|c| class_prompt(c)).collect();
            let classes = text_embeddings(model, tokenizer, &prompts)?;
            let correct = images
                .iter()
                .zip(labels)
                .filter(|(image, &label)| {
                    let scores: Vec<f32> = classes.iter().map(|c| dot(image, c)).collect();
                    top_k(&scores, 1)[0] == label as usize
                })
                .count();
            Some(correct as f64 / m as f64)
        }
        _ => None,
    };
    let set: &[&str] = match templates {
        RetrievalTemplates::Train => &TRAIN_TEMPLATES,
        RetrievalTemplates::HeldOut => &HELD_OUT_TEMPLATES,
    };
    let mut distinct: Vec<String> = Vec::new();
    let mut index_of: HashMap<String, usize> = HashMap::new();
    let mut caption_of = Vec::with_capacity(m);
    for i in 0..m {
        let text = captions.caption(i, set[i % set.len()])?;
        let next = distinct.len();
        let id = *index_of.entry(text.clone()).or_insert(next);
        if id == next {
            distinct.push(text);
        }
        caption_of.push(id);
    }
    let texts = text_embeddings(model, tokenizer, &distinct)?;
    let mut image_hits = [0usize; 2];
    for (image, &own) in images.iter().zip(&caption_of) {
        let scores: Vec<f32> = texts.iter().map(|t| dot(image, t)).collect();
        let top = top_k(&scores, 5);
        image_hits[0] += usize::from(top[0] == own);
        image_hits[1] += usize::from(top.contains(&own));
    }
    let mut text_hits = [0usize; 2];
    for (id, text) in texts.iter().enumerate() {
        let scores: Vec<f32> = images.iter().map(|image| dot(image, text)).collect();
        let top = top_k(&scores, 5);
        text_hits[0] += usize::from(caption_of[top[0]] == id);
        text_hits[1] += usize::from(top.iter().any(|&i| caption_of[i] == id));
    }
    let (mf, tf) = (m as f64, distinct.len() as f64);
    Ok(ClipEvalReport {
        images: m,
        zero_shot_accuracy,
        distinct_captions: distinct.len(),
        image_to_text_recall_at_1: image_hits[0] as f64 / mf,
        image_to_text_recall_at_5: image_hits[1] as f64 / mf,
        text_to_image_recall_at_1: text_hits[0] as f64 / tf,
        text_to_image_recall_at_5: text_hits[1] as f64 / tf,
    })
}
