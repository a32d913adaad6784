//! Drawn figures checked structurally: the PNG has the figure's size, the plotting area holds ink (the series were
//! drawn), the margins hold the tick labels and titles, and bad input is an error that says what is wrong.

use diffuse_plot::{
    check_png, Axis, Chart, Figure, ImageGrid, Panel, RgbImage, Series, CHART_SIZE, PALETTE,
};

fn loss_like() -> Chart {
    let raw: Vec<(f64, f64)> = (0..200)
        .map(|s| (s as f64, 0.05 + (-(s as f64) / 30.0).exp()))
        .collect();
    Chart::new("Training loss", Axis::linear("step"), Axis::log("loss"))
        .with(Series::faint("per step", raw.clone()))
        .with(Series::line("moving average", raw))
}

#[test]
fn a_chart_fills_its_plotting_area_and_labels_its_axes() {
    let png = Figure::single(loss_like()).png().unwrap();
    let image = check_png(&png).unwrap();
    assert_eq!((image.width, image.height), CHART_SIZE);
    // The first coloured series is drawn in the first palette colour, on many pixels.
    let blue = PALETTE[0].0;
    assert!(image.count([blue.0, blue.1, blue.2]) > 300);
    // Plotting area (right of the tick labels, between title and axis labels) and the left margin both hold ink.
    let (w, h) = CHART_SIZE;
    assert!(image.ink((120, w - 20), (60, h - 80)) > 0.01);
    assert!(
        image.ink((0, 100), (60, h - 80)) > 0.005,
        "tick labels and the axis title"
    );
    assert!(image.ink((w / 4, 3 * w / 4), (0, 45)) > 0.005, "the title");
}

#[test]
fn stacked_and_side_by_side_panels_share_the_figure() {
    let figure = Figure {
        width: 800,
        height: 900,
        panels: vec![
            (Panel::Chart(loss_like()), 2.0),
            (Panel::Row(vec![loss_like(), loss_like()]), 1.0),
        ],
    };
    let image = check_png(&figure.png().unwrap()).unwrap();
    assert_eq!((image.width, image.height), (800, 900));
    assert!(
        image.ink((420, 780), (650, 880)) > 0.01,
        "the bottom-right chart is drawn"
    );
}

#[test]
fn an_image_grid_enlarges_images_by_a_whole_factor() {
    let black = RgbImage::from_signed_unit(1, 4, 4, &[-1.0; 16]).unwrap();
    let grid = ImageGrid {
        title: String::new(),
        images: vec![black.clone(), black],
        columns: 2,
        row_labels: vec![],
        column_labels: vec![],
    };
    let figure = Figure {
        width: 200,
        height: 100,
        panels: vec![(Panel::Images(grid), 1.0)],
    };
    let image = check_png(&figure.png().unwrap()).unwrap();
    // Two 4×4 images enlarged by the largest factor that fits: (100 − 8 title − 8 − 4 gap)/4 = 20 → 80×80 each.
    assert_eq!(image.count([0, 0, 0]), 2 * 80 * 80);
}

#[test]
fn a_long_row_label_widens_its_column_instead_of_running_off_the_edge() {
    // White images on the white background: all ink is the label's.
    let white = RgbImage::from_signed_unit(1, 4, 4, &[1.0; 16]).unwrap();
    let grid = ImageGrid {
        title: String::new(),
        images: vec![white.clone(), white],
        columns: 2,
        row_labels: vec!["a photo of a dark and wide ankle boot".into()],
        column_labels: vec![],
    };
    let figure = Figure {
        width: 700,
        height: 100,
        panels: vec![(Panel::Images(grid), 1.0)],
    };
    let image = check_png(&figure.png().unwrap()).unwrap();
    assert!(image.ink((0, 700), (0, 100)) > 0.001, "the label is drawn");
    assert_eq!(
        image.ink((0, 6), (0, 100)),
        0.0,
        "the label starts inside the figure"
    );
}

#[test]
fn figures_without_anything_to_draw_are_errors_naming_the_problem() {
    let empty = Chart::new("nothing", Axis::linear("x"), Axis::log("y"))
        .with(Series::line("zeros", vec![(0.0, 0.0), (1.0, -1.0)]));
    let e = Figure::single(empty).png().unwrap_err().to_string();
    assert!(
        e.contains("no finite point") && e.contains("log axis"),
        "{e}"
    );
    let bad_range = Chart::new("r", Axis::linear("x").range(1.0, 1.0), Axis::linear("y"))
        .with(Series::line("a", vec![(0.0, 0.0), (1.0, 1.0)]));
    let e = Figure::single(bad_range).png().unwrap_err().to_string();
    assert!(e.contains("range"), "{e}");
    assert!(RgbImage::from_signed_unit(2, 2, 2, &[0.0; 8]).is_err());
    let e = Figure {
        width: 10,
        height: 10,
        panels: vec![],
    }
    .png()
    .unwrap_err()
    .to_string();
    assert!(e.contains("at least one panel"), "{e}");
}

#[test]
fn save_writes_the_png_atomically_in_place() {
    let dir = std::env::temp_dir().join(format!("diffuse-plot-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("loss.png");
    Figure::single(loss_like()).save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(check_png(&bytes).unwrap().width, CHART_SIZE.0);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
